"""Builds a shape_scenes config as ArrayRecord, without TensorFlow.

  python -m nerf_vae_jax.data.build shape_scenes/tiny --data_dir=DIR [--workers=N]

The stock ``tfds build`` CLI (tensorflow-datasets 4.9.10) imports TensorFlow
at start-up; this command drives the same builder (``data/shape_scenes``)
through ``download_and_prepare(file_format='array_record')``. TFDS writes
into a temporary folder and renames it when complete, so an interrupted build
never looks finished.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import tensorflow_datasets as tfds

from nerf_vae_jax.scenes import specs

DATASETS_DIR = Path(__file__).resolve().parents[2] / "data"
_MODULE = "shape_scenes_dataset_builder"


def default_data_dir() -> str:
  return os.fspath(tfds.core.constants.DATA_DIR)


def parse_name(name: str) -> specs.SceneSpec:
  """'shape_scenes/tiny' (or 'shape_scenes' for the default) -> its spec."""
  dataset, _, config = name.partition("/")
  if dataset != "shape_scenes":
    raise ValueError(f"Unknown dataset {dataset!r} in {name!r}: this project builds 'shape_scenes/<config>' "
                     f"with config one of {', '.join(specs.SPECS)}.")
  return specs.get_spec(config or specs.DEFAULT)


def builder_class():
  """The Builder class of data/shape_scenes, imported as the package
  ``shape_scenes`` (TFDS wants a builder module inside a package)."""
  module = f"shape_scenes.{_MODULE}"
  if module not in sys.modules:
    folder = DATASETS_DIR / "shape_scenes"
    if not (folder / f"{_MODULE}.py").exists():
      raise FileNotFoundError(
          f"The dataset builder {folder / _MODULE}.py is missing. nerf_vae_jax must be installed from "
          f"its source tree (pip install -e .) so that data/shape_scenes sits beside the package.")
    package_spec = importlib.util.spec_from_file_location(
        "shape_scenes", folder / "__init__.py", submodule_search_locations=[os.fspath(folder)])
    package = importlib.util.module_from_spec(package_spec)
    sys.modules["shape_scenes"] = package
    package_spec.loader.exec_module(package)
    importlib.import_module(module)
  return sys.modules[module].Builder


def get_builder(name: str, data_dir: str | None = None):
  spec = parse_name(name)
  return builder_class()(config=spec.name, data_dir=data_dir or default_data_dir())


def built_dir(name: str, data_dir: str | None = None) -> Path | None:
  """The folder of the newest complete build of ``name`` in data_dir, or None.

  Only a finished build has dataset_info.json in its version folder (TFDS
  writes into an ``incomplete.*`` folder and renames it at the end).
  """
  spec = parse_name(name)
  root = Path(data_dir or default_data_dir()) / "shape_scenes" / spec.name
  done = [p.parent for p in root.glob("*/dataset_info.json") if not p.parent.name.startswith("incomplete")]
  return max(done, key=lambda p: tuple(int(x) for x in p.name.split("."))) if done else None


def is_built(name: str, data_dir: str | None = None) -> bool:
  """Whether a complete build of the dataset is in data_dir."""
  return built_dir(name, data_dir) is not None


def check_writable(data_dir: str) -> None:
  """Raises a clear error if data_dir cannot be created or written."""
  try:
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=data_dir):
      pass
  except OSError as e:
    raise PermissionError(
        f"Cannot write the dataset to data_dir={data_dir!r} ({e.strerror}). "
        f"Pass a writable folder with --data_dir (or config.data.data_dir).") from e


def build(name: str, data_dir: str | None = None, workers: int | None = None):
  """Builds the dataset if it is not complete yet; returns the builder."""
  data_dir = data_dir or default_data_dir()
  spec = parse_name(name)
  builder = get_builder(name, data_dir)
  if is_built(name, data_dir):
    print(f"shape_scenes/{spec.name} is already built in {data_dir}.", flush=True)
    return builder
  check_writable(data_dir)
  total = sum(spec.splits.values())
  print(f"Building shape_scenes/{spec.name} ({total} scenes, {spec.num_views} views of "
        f"{spec.height}x{spec.width}) in {data_dir} ...", flush=True)
  start = time.time()
  type(builder).workers = workers
  builder.download_and_prepare(
      file_format="array_record",
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  seconds = time.time() - start
  print(f"Built shape_scenes/{spec.name} in {seconds:.0f} s ({total / seconds:.1f} scenes/s): "
        f"{builder.data_dir}", flush=True)
  return builder


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("name", help="shape_scenes/<config>, config one of: " + ", ".join(specs.SPECS))
  parser.add_argument("--data_dir", default=None, help=f"where to write (default: {default_data_dir()})")
  parser.add_argument("--workers", type=int, default=None,
                      help="rendering processes (default: one per core; 0: render in this process)")
  args = parser.parse_args(argv)
  try:
    build(args.name, args.data_dir, args.workers)
  except (ValueError, PermissionError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
