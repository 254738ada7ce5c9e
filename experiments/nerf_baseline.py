"""The per-scene NeRF on the same views and metrics as NeRF-VAE
(nerf_vae_jax/evaluation/nerf_comparison.py).

  python -m experiments.nerf_baseline --workdir=DIR [--split=test] [--num_scenes=8] [--steps=1000]
  python -m experiments.nerf_baseline --workdir=DIR --dense [--views=8,16,32,64,100]
"""

import sys

from absl import app, flags

from experiments import common
from nerf_vae_jax.evaluation import nerf_comparison

# The run's config.json gives the NeRF's architecture and the data; --split is ignored with --dense.
common.define_run_flags(step=False, scenes=8, scenes_help="Scenes (each fitted once per number of views).",
                        split=True)
flags.DEFINE_list("context", ["1", "2", "3", "4"], "Numbers of training views (without --dense).")
flags.DEFINE_bool("dense", False, "Use shape_scenes/dense: train on --views views, score on the last 10.")
flags.DEFINE_list("views", ["8", "16", "32", "64", "100"], "Numbers of training views with --dense.")
flags.DEFINE_integer("steps", 1000, "Adam steps per NeRF.")
flags.DEFINE_integer("num_rays", 512, "Random training pixels per step per NeRF.")
flags.DEFINE_float("learning_rate", 5e-3, "Peak learning rate (cosine decay).")
flags.DEFINE_integer("group", 16, "NeRFs fitted at once (vmapped).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  counts = [int(v) for v in (FLAGS.views if FLAGS.dense else FLAGS.context)]
  sys.exit(common.run(nerf_comparison.run_baseline, workdir=FLAGS.workdir, split=FLAGS.split,
                      num_scenes=FLAGS.num_scenes, counts=counts, dense=FLAGS.dense, steps=FLAGS.steps,
                      num_rays=FLAGS.num_rays, learning_rate=FLAGS.learning_rate, group=FLAGS.group,
                      data_dir=FLAGS.data_dir))


if __name__ == "__main__":
  app.run(main)
