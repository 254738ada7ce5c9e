"""Fits a run's second-stage prior: a Gaussian (low rank plus diagonal) over the latents of its posteriors of
training scenes (nerf_vae_jax/evaluation/second_stage.py, models/fitted_prior.py). Then sample it with
`python -m experiments.generate --workdir=DIR --prior=fitted`.

  python -m experiments.fit_prior --workdir=DIR [--step=N] [--num_scenes=2048] [--rank=128]
"""

import sys

from absl import app, flags

from experiments import common
from nerf_vae_jax.evaluation import second_stage

common.define_run_flags(scenes=2048, scenes_help="Training scenes whose posteriors the prior is fitted to.")
flags.DEFINE_integer("rank", 128, "Factors of the covariance (principal directions of the latents).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  sys.exit(common.run(second_stage.fit_run, workdir=FLAGS.workdir, step=FLAGS.step, num_scenes=FLAGS.num_scenes,
                      rank=FLAGS.rank, data_dir=FLAGS.data_dir))


if __name__ == "__main__":
  app.run(main)
