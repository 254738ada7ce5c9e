"""Where a run's error over the backdrop comes from: its background colour, or haze over the backdrop.

  python -m experiments.diagnose_background --workdir=DIR [--num_scenes=64] [--context=4]

On the held-out views of test scenes (the evaluation protocol), means over
scenes of: the MSE on true background pixels (evaluation's background_mse),
the squared error of the model's background colour against the true
backdrop's, and the rendered opacity over the backdrop
(``background_error.breakdown``).
"""

import sys

import numpy as np
from absl import app, flags

from experiments import common
from nerf_vae_jax.data import source
from nerf_vae_jax.evaluation import background_error
from nerf_vae_jax.train import run_dir

common.define_run_flags(scenes=64, scenes_help="Test scenes.")
flags.DEFINE_integer("context", 4, "Context views.")
FLAGS = flags.FLAGS


def diagnose(workdir, step, num_scenes, context, data_dir=None):
  config, model, _, params, step = run_dir.restore_params(workdir, step)
  src = source.SceneSource(config.data.name, "test", data_dir or config.data.data_dir)
  scenes = [src[i] for i in range(min(num_scenes, len(src)))]
  rows = background_error.breakdown(model, params, scenes, context)
  means = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
  print(f"{workdir} step {step}, {len(scenes)} test scenes from {context} views: background MSE "
        f"{means['background_mse']:.5f}, background colour error {means['colour_error']:.5f}, opacity over the "
        f"background {means['background_opacity']:.3f}")


def main(argv):
  del argv
  sys.exit(common.run(diagnose, workdir=FLAGS.workdir, step=FLAGS.step, num_scenes=FLAGS.num_scenes,
                      context=FLAGS.context, data_dir=FLAGS.data_dir))


if __name__ == "__main__":
  app.run(main)
