"""Evaluates a training run's checkpoint on held-out scenes (nerf_vae_jax/evaluation/run.py).

  python -m experiments.evaluate --workdir=DIR [--step=N] [--split=test|test_ood] [--num_scenes=M]
      [--refine_steps=20]
"""

import sys

from absl import app, flags

from experiments import common
from nerf_vae_jax.evaluation import run

common.define_run_flags(scenes=0, scenes_help="Scenes to evaluate (default: config.eval.num_scenes).", split=True)
flags.DEFINE_list("context", ["1", "2", "3", "4"], "Numbers of context views.")
flags.DEFINE_integer("refine_steps", 0, "Also evaluate with this many steps of test-time refinement (0: off).")
flags.DEFINE_integer("num_images", 4, "Scenes shown in the image grids and orbit GIFs.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  sys.exit(common.run(run.evaluate, workdir=FLAGS.workdir, step=FLAGS.step, split=FLAGS.split,
                      num_scenes=FLAGS.num_scenes, context=[int(k) for k in FLAGS.context],
                      refine_steps=FLAGS.refine_steps, num_images=FLAGS.num_images, data_dir=FLAGS.data_dir))


if __name__ == "__main__":
  app.run(main)
