"""Where a run's haze lies: on the objects' silhouettes, or in open space; and the data's own partial pixels.

  python -m experiments.diagnose_haze --workdir=DIR [--num_scenes=64] [--context=4]

On the held-out views of test scenes (the evaluation protocol, rendered from
the posterior mean), the hazy pixels (rendered opacity in (0.1, 0.9)) by
region of the true masks: the object interior, the inner and outer edge
bands, the far backdrop (``haze_regions.regions``). For a ``shape_scenes``
dataset it also prints the share of the data's pixels that an exact
area-integrating renderer would draw hazy (``haze_regions.partial_coverage``).
"""

import sys

import numpy as np
from absl import app, flags

from experiments import common
from nerf_vae_jax import errors
from nerf_vae_jax.data import source
from nerf_vae_jax.evaluation import haze_regions, protocol, sample_quality
from nerf_vae_jax.train import run_dir

common.define_run_flags(scenes=64, scenes_help="Test scenes.")
flags.DEFINE_integer("context", 4, "Context views.")
flags.DEFINE_integer("rays_per_side", 8, "Rays per pixel side for the data's partial coverage (0: skip it).")
FLAGS = flags.FLAGS


def diagnose(workdir, step, num_scenes, context, rays_per_side, data_dir=None):
  config, model, _, params, step = run_dir.restore_params(workdir, step)
  src = source.SceneSource(config.data.name, "test", data_dir or config.data.data_dir)
  scenes = [src[i] for i in range(min(num_scenes, len(src)))]
  if "masks" not in scenes[0]:
    raise errors.UserError(f"{config.data.name} has no object masks, and the haze regions are taken from them; "
                           "use a dataset with masks (shape_scenes, or a converted one with RGBA frames).")
  _, pred = protocol.evaluate(model, params, scenes, context, seed=config.seed)
  masks = np.stack([s["masks"][protocol.HELD_OUT] for s in scenes])
  print(f"{workdir} step {step}, {len(scenes)} test scenes from {context} views: hazy "
        f"{sample_quality.haze_share(pred['acc']):.1%} of the held-out pixels, fog (no opaque pixel next to "
        f"it) {sample_quality.fog_share(pred['acc']):.1%}")
  for name, r in haze_regions.regions(pred["acc"], masks).items():
    print(f"  {name:16s} {r['pixels']:6.1%} of the pixels, {r['hazy']:6.1%} of them hazy: "
          f"{r['hazy_of_all']:6.2%} of all pixels")
  dataset, _, spec = config.data.name.partition("/")
  if rays_per_side and dataset == "shape_scenes":
    share = haze_regions.partial_coverage(spec, "test", len(scenes), rays_per_side)
    print(f"  the data: {share:.1%} of these scenes' pixels (all views) have an object coverage in (0.1, 0.9) "
          f"({rays_per_side}x{rays_per_side} rays per pixel)")


def main(argv):
  del argv
  sys.exit(common.run(diagnose, workdir=FLAGS.workdir, step=FLAGS.step, num_scenes=FLAGS.num_scenes,
                      context=FLAGS.context, rays_per_side=FLAGS.rays_per_side, data_dir=FLAGS.data_dir))


if __name__ == "__main__":
  app.run(main)
