"""Builds a dataset as ArrayRecord, without TensorFlow.

  python -m experiments.build shape_scenes/tiny --data_dir=DIR [--workers=N]      (nerf_vae_jax/data/build.py)
  python -m experiments.build multiview/NAME --source=DIR --format=blender|srn --data_dir=DIR \
      [--views=N] [--resolution=H] [--background=1,1,1] [--scene_radius=R] [--scene_centre=x,y,z] [--split_file=F]
                                                                               (nerf_vae_jax/data/multiview.py)
"""

import sys

from absl import app, flags

from experiments import common
from nerf_vae_jax.data import build, multiview
from nerf_vae_jax.scenes import specs

flags.DEFINE_string("data_dir", None, "Where to write (default: TFDS's data dir).")
flags.DEFINE_integer("workers", None, "shape_scenes: rendering processes (default: one per core; 0: in this process).")
flags.DEFINE_string("source", None, "multiview: the folder of scenes to convert (<split>/<scene>/).")
flags.DEFINE_enum("format", None, ["blender", "srn"], "multiview: the source's format.")
flags.DEFINE_integer("views", None, "multiview: views per scene (default: the fewest any scene has).")
flags.DEFINE_integer("resolution", None, "multiview: resize images to this height (default: keep; sizes must match).")
flags.DEFINE_list("background", ["1", "1", "1"], "multiview: RGB in [0, 1] that RGBA frames are composited over.")
flags.DEFINE_float("scene_radius", None, "multiview: radius of the scene's sphere (default: from the cameras).")
flags.DEFINE_list("scene_centre", None, "multiview: x,y,z centre of the scene (default: from the cameras).")
flags.DEFINE_string("split_file", None, "multiview: JSON {split: [scene folder names]} (default: the folders).")
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) != 2:
    sys.exit(f"usage: python -m experiments.build shape_scenes/<config> [--data_dir=DIR]  (configs: "
             f"{', '.join(specs.SPECS)})\n   or: python -m experiments.build multiview/<name> --source=DIR "
             f"--format=blender|srn [--data_dir=DIR]")
  name = argv[1]
  if name.startswith("multiview/"):
    if not FLAGS.source or not FLAGS.format:
      sys.exit("error: converting a multiview dataset needs --source=DIR and --format=blender|srn.")
    centre = [float(x) for x in FLAGS.scene_centre] if FLAGS.scene_centre else None
    sys.exit(common.run(multiview.convert, name=name.split("/", 1)[1], source=FLAGS.source, fmt=FLAGS.format,
                        data_dir=FLAGS.data_dir or build.default_data_dir(), views=FLAGS.views, resolution=FLAGS.resolution,
                        background=[float(x) for x in FLAGS.background], scene_radius=FLAGS.scene_radius,
                        scene_centre=centre, split_file=FLAGS.split_file))
  sys.exit(common.run(build.build, name=name, data_dir=FLAGS.data_dir, workers=FLAGS.workers))


if __name__ == "__main__":
  app.run(main)
