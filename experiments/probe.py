"""Trains (once) and scores the probe network whose features the sample metrics' Fréchet distance uses
(nerf_vae_jax/evaluation/probe_net.py); later calls read the published or cached probe.

  python -m experiments.probe --dataset=shape_scenes/32px --data_dir=DIR
  # After a change to the dataset's spec or to the probe: train it and publish it in the package (commit the
  # two files it writes), so that every machine measures with the same network.
  python -m experiments.probe --dataset=shape_scenes/32px --data_dir=DIR --publish
"""

import sys

from absl import app, flags

from experiments import common
from nerf_vae_jax.evaluation import probe_net

flags.DEFINE_string("dataset", "shape_scenes/32px", "The shape_scenes dataset (built in --data_dir).")
flags.DEFINE_string("data_dir", None, "Where the dataset is built (default: TFDS's data dir).")
flags.DEFINE_bool("publish", False, "Also copy the probe into the package (nerf_vae_jax/evaluation/probes/).")
FLAGS = flags.FLAGS


def _probe(dataset: str, data_dir: str | None, publish: bool) -> None:
  if publish:
    probe_net.publish(dataset, data_dir)
  _, _, info = probe_net.load_or_train(dataset, data_dir)
  print(probe_net.describe(info))
  print(f"Read from {info['folder']}")


def main(argv):
  del argv
  sys.exit(common.run(_probe, dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, publish=FLAGS.publish))


if __name__ == "__main__":
  app.run(main)
