"""`make demo`: builds shape_scenes/tiny and writes a contact sheet of it.

  python -m experiments.demo --out=out [--data_dir=DIR]
"""

from __future__ import annotations

import argparse
import os
import sys

from nerf_vae_jax import visualize
from nerf_vae_jax.data import build, source


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default="out", help="output folder")
  parser.add_argument("--data_dir", default=None, help="TFDS data dir (default: OUT/tensorflow_datasets)")
  args = parser.parse_args(argv)
  data_dir = args.data_dir or os.path.join(args.out, "tensorflow_datasets")
  build.build("shape_scenes/tiny", data_dir)
  test = source.SceneSource("shape_scenes/tiny", "test", data_dir)
  sheet = visualize.contact_sheet([test[i] for i in range(6)])
  path = os.path.join(args.out, "shape_scenes_tiny_contact_sheet.png")
  visualize.save_png(path, sheet, scale=3)
  print(f"\nContact sheet (6 test scenes x 8 views; rows: image, depth, mask): {os.path.abspath(path)}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
