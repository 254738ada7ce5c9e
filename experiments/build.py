"""Builds a shape_scenes config as ArrayRecord, without TensorFlow (nerf_vae_jax/data/build.py).

  python -m experiments.build shape_scenes/tiny --data_dir=DIR [--workers=N]
"""

import sys

from absl import app, flags

from experiments import common
from nerf_vae_jax.data import build
from nerf_vae_jax.scenes import specs

flags.DEFINE_string("data_dir", None, "Where to write (default: TFDS's data dir).")
flags.DEFINE_integer("workers", None, "Rendering processes (default: one per core; 0: render in this process).")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) != 2:
    sys.exit(f"usage: python -m experiments.build shape_scenes/<config> [--data_dir=DIR]; "
             f"configs: {', '.join(specs.SPECS)}")
  sys.exit(common.run(build.build, argv[1], FLAGS.data_dir, FLAGS.workers))


if __name__ == "__main__":
  app.run(main)
