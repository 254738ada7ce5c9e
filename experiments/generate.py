"""Samples scenes from NeRF-VAE's prior, measures them against real views, shows what one view leaves
open, and interpolates between test scenes (nerf_vae_jax/evaluation/samples.py).

  python -m experiments.generate --workdir=DIR [--step=N] [--num_samples=16] [--metric_scenes=128]
      [--prior=fitted|transformer]
"""

import sys

from absl import app, flags

from experiments import common
from nerf_vae_jax.evaluation import samples

common.define_run_flags()
flags.DEFINE_integer("num_samples", 16, "Scenes to sample from the prior.")
flags.DEFINE_integer("num_frames", 24, "Frames of the orbit.")
flags.DEFINE_integer("num_pairs", 3, "Pairs of test scenes to interpolate between.")
flags.DEFINE_integer("num_steps", 8, "Latents along each interpolation.")
flags.DEFINE_integer("seed", 0, "Seed of the prior samples.")
flags.DEFINE_integer("metric_scenes", 128, "Scenes per set of the sample metrics (0: no metrics).")
flags.DEFINE_integer("far_side_scenes", 32, "Test scenes of the far-side spread from 1 view (0: none).")
flags.DEFINE_float("temperature", 1.0, "Scales the prior samples' noise at every level (1: the prior itself); "
                   "another value writes eval/STEP/generate_t<T>/.")
flags.DEFINE_enum("prior", "model", ["model", "fitted", "transformer"], "Sample the model's prior, or one of the "
                  "run's second-stage priors (python -m experiments.fit_prior [--kind=transformer] first; writes "
                  "eval/STEP/generate_<prior>/ "
                  "with the held-out bounds under both priors).")
flags.DEFINE_integer("bound_scenes", 64, "With a second-stage prior: test scenes of the held-out bounds (0: none).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  sys.exit(common.run(samples.generate, workdir=FLAGS.workdir, step=FLAGS.step, num_samples=FLAGS.num_samples,
                      num_frames=FLAGS.num_frames, num_pairs=FLAGS.num_pairs, num_steps=FLAGS.num_steps,
                      seed=FLAGS.seed, data_dir=FLAGS.data_dir, metric_scenes=FLAGS.metric_scenes,
                      far_side_scenes=FLAGS.far_side_scenes, temperature=FLAGS.temperature,
                      prior=FLAGS.prior, bound_scenes=FLAGS.bound_scenes))


if __name__ == "__main__":
  app.run(main)
