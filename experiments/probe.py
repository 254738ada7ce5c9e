"""Trains (once) and scores the probe network whose features the sample metrics' Fréchet distance uses
(nerf_vae_jax/evaluation/probe_net.py); later calls read the cached probe.

  python -m experiments.probe --dataset=shape_scenes/32px --data_dir=DIR
"""

import sys

from absl import app, flags

from experiments import common
from nerf_vae_jax.evaluation import probe_net

flags.DEFINE_string("dataset", "shape_scenes/32px", "The shape_scenes dataset (built in --data_dir).")
flags.DEFINE_string("data_dir", None, "Where the dataset is built (default: TFDS's data dir).")
FLAGS = flags.FLAGS


def _probe(dataset: str, data_dir: str | None) -> None:
  _, _, info = probe_net.load_or_train(dataset, data_dir)
  print(probe_net.describe(info))
  print(f"Cached in {info['folder']}")


def main(argv):
  del argv
  sys.exit(common.run(_probe, dataset=FLAGS.dataset, data_dir=FLAGS.data_dir))


if __name__ == "__main__":
  app.run(main)
