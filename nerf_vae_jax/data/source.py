"""Opening a built shape_scenes split, with clear errors, and decoding scenes.

``open_split`` wraps ``tfds.data_source`` (ArrayRecord, no TensorFlow): it
checks that the dataset is built and the split exists, and turns read errors
of damaged record files into a message that names the fix.
"""

from __future__ import annotations

import io

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from nerf_vae_jax import errors
from nerf_vae_jax.data import build


class DatasetError(errors.UserError):
  """A dataset that is missing, incomplete or damaged; the message says what to do."""


def _rebuild_hint(name: str, data_dir: str) -> str:
  return f"python -m experiments.build {name} --data_dir={data_dir}"


class _PNGBytes(tfds.decode.Decoder):
  """Leaves an Image feature's PNG bytes undecoded (TFDS's SkipDecoding has no numpy path for a Sequence)."""

  @property
  def dtype(self):
    return np.object_

  def decode_example(self, serialized_example):
    return serialized_example

  decode_example_np = decode_batch_example_np = decode_example


def decode_pngs(pngs, indices) -> np.ndarray:
  """uint8 [len(indices), H, W, 3]: the PNG bytes ``pngs[i]`` decoded as TFDS decodes them (PIL)."""
  out = []
  for i in indices:
    with Image.open(io.BytesIO(pngs[i])) as image:
      out.append(np.asarray(image, dtype=np.uint8))
  return np.stack(out)


class SceneSource:
  """Random access to the decoded scenes of one split (see ``decode``).

  ``only_views=True`` (training): a scene's images stay PNG bytes, an object
  array [V], for ``pipeline.select_views`` to decode only the views it picks,
  and its depths and masks are dropped: the step uses neither. Picklable
  (grain workers re-open the record files themselves).
  """

  def __init__(self, name: str, split: str, data_dir: str | None = None, only_views: bool = False):
    data_dir = data_dir or build.default_data_dir()
    self.spec = build.spec_of(name, data_dir)
    self.name = self.spec.full_name
    self.split, self.data_dir = split, data_dir
    folder = build.built_dir(self.name, data_dir)
    if folder is None:
      raise DatasetError(
          f"{self.name} is not built in {data_dir}. Build it with:\n  {_rebuild_hint(self.name, data_dir)}")
    # From the folder, not the TFDS registry: works in any process (grain
    # workers) without importing the builder code.
    builder = tfds.builder_from_directory(folder)
    if split not in builder.info.splits:
      raise DatasetError(f"{self.name} has no split {split!r}; its splits are: {', '.join(builder.info.splits)}.")
    self.only_views = only_views
    self._source = builder.as_data_source(split=split, decoders={"images": _PNGBytes()} if only_views else None)
    self.depth_scale = float(self.spec.depth_scale)
    # A truncated record file fails on its last records: read both ends now.
    for i in {0, len(self._source) - 1}:
      self[i]

  def __len__(self) -> int:
    return len(self._source)

  def __getitem__(self, index: int) -> dict:
    try:
      example = self._source[index]
    except RuntimeError as e:  # array_record: "Corrupted Riegeli/records file ..."
      folder = f"{self.data_dir}/{self.name}"
      raise DatasetError(
          f"Record {index} of {self.name} split {self.split!r} in {self.data_dir} is damaged ({e}). "
          f"Delete {folder} and rebuild it with:\n  {_rebuild_hint(self.name, self.data_dir)}") from e
    if self.only_views:
      return {k: v for k, v in example.items() if k not in ("depths", "masks")}
    return decode(example, self.depth_scale)

  def __repr__(self):
    return f"SceneSource({self.name!r}, split={self.split!r}, {len(self)} scenes)"


def decode(example: dict, depth_scale: float) -> dict:
  """A TFDS example as arrays (V views, H x W pixels, M objects):

  images uint8 [V, H, W, 3]; depths float32 [V, H, W] (distance along the unit
  ray to the first hit, 0 on background); masks uint8 [V, H, W] (0 background,
  k + 1 for object k); intrinsics float32 [V, 4]; cam_to_world float32
  [V, 4, 4]; background, light_direction float32 [3]; scene_id int64;
  objects: dict of shape int64 [M], position float32 [M, 3], size, rotation
  float32 [M], color float32 [M, 3].
  """
  out = dict(example)
  out["images"] = np.stack(example["images"])
  if isinstance(out.get("scene_name"), bytes):  # converted datasets: the source folder's name
    out["scene_name"] = out["scene_name"].decode()
  if "depths" in example:  # converted datasets (multiview) have no depths, and masks only where known
    out["depths"] = example["depths"].astype(np.float32) / np.float32(depth_scale)
  if "objects" in example:
    out["objects"] = {k: np.asarray(v) for k, v in example["objects"].items()}
  return out
