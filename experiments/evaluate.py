"""Evaluates a training run's checkpoint on held-out scenes (nerf_vae_jax/evaluation/run.py).

  python -m experiments.evaluate --workdir=DIR [--step=N] [--split=test|test_ood] [--num_scenes=M]
      [--refine_steps=20]
"""

import sys

from absl import app, flags

from experiments import common
from nerf_vae_jax.evaluation import run

flags.DEFINE_string("workdir", None, "The training run's workdir (holds config.json and checkpoints/).")
flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
flags.DEFINE_string("split", "test", "Dataset split: test or test_ood.")
flags.DEFINE_integer("num_scenes", None, "Scenes to evaluate (default: config.eval.num_scenes).")
flags.DEFINE_list("context", ["1", "2", "3", "4"], "Numbers of context views.")
flags.DEFINE_integer("refine_steps", 0, "Also evaluate with this many steps of test-time refinement (0: off).")
flags.DEFINE_integer("num_images", 4, "Scenes shown in the image grids and orbit GIFs.")
flags.DEFINE_string("data_dir", None, "Where the dataset is (default: the one in config.json).")
flags.mark_flags_as_required(["workdir"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  sys.exit(common.run(run.evaluate, FLAGS.workdir, FLAGS.step, FLAGS.split, FLAGS.num_scenes,
                      [int(k) for k in FLAGS.context], FLAGS.refine_steps, FLAGS.num_images, FLAGS.data_dir))


if __name__ == "__main__":
  app.run(main)
