"""Exports a dataset's scenes to a standard multi-view format (nerf_vae_jax/data/export.py).

  python -m experiments.export shape_scenes/tiny --format=blender|srn --out=DIR [--num_scenes=N]
"""

import sys

from absl import app, flags

from experiments import common
from nerf_vae_jax.data import export

flags.DEFINE_enum("format", None, ["blender", "srn"], "The format to write.")
flags.DEFINE_string("out", None, "Output folder (gets <split>/<scene>/ folders).")
flags.DEFINE_list("splits", ["train", "test"], "Splits to export.")
flags.DEFINE_integer("num_scenes", None, "Scenes per split (default: all).")
flags.DEFINE_string("data_dir", None, "Where the dataset is built (default: TFDS's data dir).")
flags.mark_flags_as_required(["format", "out"])
FLAGS = flags.FLAGS


def main(argv):
  if len(argv) != 2:
    sys.exit("usage: python -m experiments.export shape_scenes/<config> --format=blender|srn --out=DIR")
  sys.exit(common.run(export.export, name=argv[1], fmt=FLAGS.format, out=FLAGS.out, splits=FLAGS.splits,
                      num_scenes=FLAGS.num_scenes, data_dir=FLAGS.data_dir))


if __name__ == "__main__":
  app.run(main)
