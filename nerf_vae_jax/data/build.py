"""Builds a shape_scenes config as ArrayRecord, without TensorFlow; finds and describes built datasets.

  python -m experiments.build shape_scenes/tiny --data_dir=DIR [--workers=N]
  python -m experiments.build multiview/NAME --source=DIR --format=blender|srn --data_dir=DIR   (multiview.py)

The stock ``tfds build`` CLI (tensorflow-datasets 4.9.10) imports TensorFlow
at start-up; this command drives the same builder (``nerf_vae_jax/data/shape_scenes.py``)
through ``download_and_prepare(file_format='array_record')``. TFDS writes
into a temporary folder and renames it when complete, so an interrupted build
never looks finished.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import tensorflow_datasets as tfds

from nerf_vae_jax import errors
from nerf_vae_jax.data.shape_scenes import ShapeScenes
from nerf_vae_jax.scenes import shards, specs


def default_data_dir() -> str:
  return os.fspath(tfds.core.constants.DATA_DIR)


def get_builder(name: str, data_dir: str | None = None, pool=None) -> ShapeScenes:
  """The TFDS builder of 'shape_scenes/<config>' (``pool``: see ``ShapeScenes``)."""
  return ShapeScenes(config=specs.parse_name(name).name, data_dir=data_dir or default_data_dir(), pool=pool)


def _split_name(name: str) -> tuple[str, str]:
  dataset, _, config = name.partition("/")
  if dataset == "multiview":
    if not config:
      raise errors.ConfigError(f"{name!r}: name the converted dataset, 'multiview/<name>'.")
    return dataset, config
  return "shape_scenes", specs.parse_name(name).name


def built_dir(name: str, data_dir: str | None = None) -> Path | None:
  """The folder of the newest complete build of ``name`` in data_dir, or None.

  Only a finished build has dataset_info.json in its version folder (TFDS
  writes into an ``incomplete.*`` folder and renames it at the end).
  """
  dataset, config = _split_name(name)
  root = Path(data_dir or default_data_dir()) / dataset / config
  done = [p.parent for p in root.glob("*/dataset_info.json") if not p.parent.name.startswith("incomplete")]
  return max(done, key=lambda p: tuple(int(x) for x in p.name.split("."))) if done else None


def is_built(name: str, data_dir: str | None = None) -> bool:
  """Whether a complete build of the dataset is in data_dir."""
  return built_dir(name, data_dir) is not None


def spec_of(name: str, data_dir: str | None = None) -> specs.SceneSpec:
  """The spec (image size, views, splits, scene radius) of 'shape_scenes/<config>' or 'multiview/<name>'.

  shape_scenes' come from its table; a converted dataset's from its metadata,
  so it must be built (converted) in data_dir.
  """
  dataset, config = _split_name(name)
  if dataset == "shape_scenes":
    return specs.parse_name(name)
  folder = built_dir(name, data_dir)
  if folder is None:
    raise errors.UserError(f"{name} is not in {data_dir or default_data_dir()}. Convert it first: python -m "
                           f"experiments.build {name} --source=DIR --format=blender|srn --data_dir=DATA_DIR")
  info = tfds.builder_from_directory(folder).info
  m = info.metadata
  return specs.SceneSpec(name=config, dataset="multiview", height=m["height"], width=m["width"],
                         num_views=m["num_views"], splits={k: v.num_examples for k, v in info.splits.items()},
                         scene_radius=m["scene_radius"], fov_degrees=m["fov_degrees"],
                         orbit_distance=m["camera_distance"])


def check_writable(data_dir: str) -> None:
  """Raises a clear error if data_dir cannot be created or written."""
  try:
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=data_dir):
      pass
  except OSError as e:
    raise errors.UserError(
        f"Cannot write the dataset to data_dir={data_dir!r} ({e.strerror}). "
        f"Pass a writable folder with --data_dir (or config.data.data_dir).") from e


def build(name: str, data_dir: str | None = None, workers: int | None = None):
  """Builds the dataset if it is not complete yet; returns the builder."""
  data_dir = data_dir or default_data_dir()
  if _split_name(name)[0] == "multiview":
    spec_of(name, data_dir)  # a converted dataset cannot be built from nothing: says how to convert it
    print(f"{name} is already built in {data_dir}.", flush=True)
    return None
  spec = specs.parse_name(name)
  if is_built(name, data_dir):
    print(f"shape_scenes/{spec.name} is already built in {data_dir}.", flush=True)
    return get_builder(name, data_dir)
  check_writable(data_dir)
  total = sum(spec.splits.values())
  print(f"Building shape_scenes/{spec.name} ({total} scenes, {spec.num_views} views of "
        f"{spec.height}x{spec.width}) in {data_dir} ...", flush=True)
  start = time.time()
  with shards.render_pool(workers) as pool:
    builder = get_builder(name, data_dir, pool)
    builder.download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  seconds = time.time() - start
  print(f"Built shape_scenes/{spec.name} in {seconds:.0f} s ({total / seconds:.1f} scenes/s): "
        f"{builder.data_dir}", flush=True)
  return builder
