"""Samples scenes from NeRF-VAE's prior and interpolates between test scenes
(nerf_vae_jax/evaluation/samples.py).

  python -m experiments.generate --workdir=DIR [--step=N] [--num_samples=16]
"""

import sys

from absl import app, flags

from experiments import common
from nerf_vae_jax.evaluation import samples

flags.DEFINE_string("workdir", None, "The training run's workdir.")
flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
flags.DEFINE_integer("num_samples", 16, "Scenes to sample from the prior.")
flags.DEFINE_integer("num_frames", 24, "Frames of the orbit.")
flags.DEFINE_integer("num_pairs", 3, "Pairs of test scenes to interpolate between.")
flags.DEFINE_integer("num_steps", 8, "Latents along each interpolation.")
flags.DEFINE_integer("seed", 0, "Seed of the prior samples.")
flags.DEFINE_string("data_dir", None, "Where the dataset is (default: the run's).")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  sys.exit(common.run(samples.generate, FLAGS.workdir, FLAGS.step, FLAGS.num_samples, FLAGS.num_frames,
                      FLAGS.num_pairs, FLAGS.num_steps, FLAGS.seed, FLAGS.data_dir))


if __name__ == "__main__":
  app.run(main)
