"""Fits a run's second-stage prior to its posteriors of training scenes (nerf_vae_jax/evaluation/second_stage.py):
a Gaussian, low rank plus diagonal (models/fitted_prior.py), or a causal transformer over the cells
(models/cell_transformer.py). Then sample it with `python -m experiments.generate --workdir=DIR --prior=KIND`.

  python -m experiments.fit_prior --workdir=DIR [--step=N] [--kind=fitted|transformer] [--num_scenes=N]
      [--rank=128] [--steps=1000] [--fit_to=samples|posteriors] [--context=4|training]
"""

import sys

from absl import app, flags

from experiments import common
from nerf_vae_jax.evaluation import second_stage

common.define_run_flags(scenes=0, scenes_help="Training scenes whose posteriors the prior is fitted to (default: "
                        "2048 for the Gaussian, 8192 for the transformer).")
flags.DEFINE_enum("kind", "fitted", list(second_stage.KINDS), "fitted: the Gaussian; transformer: the cell "
                  "transformer (about 1.2 s a step on 2 CPU cores).")
flags.DEFINE_integer("rank", 128, "The Gaussian's factors (principal directions of the latents).")
flags.DEFINE_integer("steps", 1000, "The transformer's training steps.")
flags.DEFINE_enum("fit_to", None, list(second_stage.FIT_TO), "samples: one posterior sample per scene (the "
                  "transformer's); posteriors (the Gaussian's default): each scene's posterior mean and variance.")
flags.DEFINE_enum("context", "4", list(second_stage.CONTEXTS), "4: the posteriors of 4 context views; "
                  "training: of the run's training range (data.min_context to max_context views, batches "
                  "cycled), the posteriors the model's own prior learns from.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  sys.exit(common.run(second_stage.fit_run, workdir=FLAGS.workdir, step=FLAGS.step, num_scenes=FLAGS.num_scenes,
                      rank=FLAGS.rank, data_dir=FLAGS.data_dir, kind=FLAGS.kind, steps=FLAGS.steps,
                      fit_to=FLAGS.fit_to, context=FLAGS.context))


if __name__ == "__main__":
  app.run(main)
