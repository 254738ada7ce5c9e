"""Bring your own scenes: a TFDS builder for multi-scene datasets converted from standard formats.

  python -m experiments.build multiview/NAME --source=DIR --format=blender|srn --data_dir=DIR \
      [--views=N] [--resolution=H] [--background=1,1,1] [--scene_radius=R] [--scene_centre=x,y,z]

Writes ``multiview/NAME`` as ArrayRecord (no TensorFlow), with the features
the model reads (``images`` as PNG, ``intrinsics``, ``cam_to_world`` in the
project's conventions, ``background``, ``scene_id``, ``masks`` where the
format has them, and ``scene_name``, the source folder). Reading, conventions
and bad-input errors are ``formats.py``'s.

* **Views.** Every scene gets the same number of views: ``--views`` or, by
  default, the fewest any scene has; a scene with more keeps that many,
  evenly spaced in its file order.
* **Size.** ``--resolution`` resizes every image (box filter; masks nearest)
  to H x H*(w/h) and scales the intrinsics to match (exact in the +0.5 pixel
  convention); by default every image must already have the same size.
* **Scene bounds.** The model samples points inside a sphere about the world
  origin. Its centre is the point nearest every camera's optical axis and its
  radius that of the largest sphere about it that every camera sees whole
  (min over cameras of distance x sin(half the narrower field of view)),
  over the train split's cameras, unless given. Cameras are translated so that
  the centre is the origin; both are stored in the dataset's metadata
  (``scene_radius``, ``scene_centre``: the original coordinates of the new
  origin), which training and evaluation read.

Every scene is read once without pixels first (cameras, sizes, view counts
are checked before anything is written); TFDS writes into an ``incomplete.*``
folder renamed at the end, so a failed or interrupted build never looks
complete.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from nerf_vae_jax.data import build, formats
from nerf_vae_jax.data.formats import ConversionError
from nerf_vae_jax.scenes import shards

SHARD_SIZE = 256  # scenes per record file


def pick_views(num: int, keep: int) -> np.ndarray:
  """``keep`` indices out of ``num``, evenly spaced, first and last included."""
  return np.unique(np.round(np.linspace(0, num - 1, keep)).astype(int)) if keep < num else np.arange(num)


def resize(scene: dict, height: int, width: int) -> dict:
  """The scene at height x width: images box-filtered, masks nearest, intrinsics scaled."""
  v, h, w, _ = scene["images"].shape
  if (h, w) == (height, width):
    return scene
  im = lambda x, f: np.asarray(Image.fromarray(x).resize((width, height), f))
  out = dict(scene, images=np.stack([im(x, Image.Resampling.BOX) for x in scene["images"]]))
  if scene["masks"] is not None:
    out["masks"] = np.stack([im(x, Image.Resampling.NEAREST) for x in scene["masks"]])
  out["intrinsics"] = scene["intrinsics"] * np.array([width / w, height / h, width / w, height / h], np.float32)
  return out


def estimate_bounds(cam_to_world: np.ndarray, intrinsics: np.ndarray, height: int, width: int):
  """(centre [3], radius) of the sphere every camera sees whole, about the point nearest all optical axes.

  cam_to_world [N, 4, 4] (OpenGL: the axis is -z), intrinsics [N, 4].
  """
  o = cam_to_world[:, :3, 3].astype(np.float64)
  d = -cam_to_world[:, :3, 2].astype(np.float64)
  d /= np.linalg.norm(d, axis=-1, keepdims=True)
  proj = np.eye(3) - d[:, :, None] * d[:, None, :]  # onto the plane normal to each axis
  a, b = proj.sum(0), np.einsum("nij,nj->i", proj, o)
  if np.linalg.cond(a) > 1e8:
    raise ConversionError("The cameras' optical axes are (nearly) parallel: the scene centre cannot be estimated. "
                          "Pass --scene_centre and --scene_radius.")
  centre = np.linalg.solve(a, b)
  half_fov = np.minimum(np.arctan(0.5 * width / intrinsics[:, 0]), np.arctan(0.5 * height / intrinsics[:, 1]))
  dist = np.linalg.norm(o - centre, axis=-1)
  return centre, float(np.min(dist * np.sin(half_fov)))


class MultiviewConfig(tfds.core.BuilderConfig):
  """One converted dataset: where it comes from and what the conversion decided."""

  def __init__(self, name: str, *, source: str, fmt: str, scenes: dict, views: int, height: int, width: int,
               has_masks: bool, background, scene_radius: float, scene_centre, camera_distance: float,
               fov_degrees: float):
    super().__init__(name=name, description=f"{fmt} scenes from {source}: {views} views of {height}x{width}")
    self.source, self.fmt, self.scenes, self.views = source, fmt, scenes, views
    self.height, self.width, self.has_masks = height, width, has_masks
    self.background = np.asarray(background, np.float32)
    self.scene_radius, self.scene_centre = scene_radius, np.asarray(scene_centre, np.float64)
    self.camera_distance, self.fov_degrees = camera_distance, fov_degrees


class Multiview(tfds.core.ShardBasedBuilder):
  """Scenes converted from a standard multi-view format (``convert`` makes the config)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = []  # one per converted dataset, made by ``convert``

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    features = {
        "scene_id": np.int64,
        "scene_name": tfds.features.Text(),
        "images": tfds.features.Sequence(tfds.features.Image(shape=(c.height, c.width, 3), encoding_format="png"),
                                         length=c.views),
        "intrinsics": tfds.features.Tensor(shape=(c.views, 4), dtype=np.float32),
        "cam_to_world": tfds.features.Tensor(shape=(c.views, 4, 4), dtype=np.float32),
        "background": tfds.features.Tensor(shape=(3,), dtype=np.float32),
    }
    if c.has_masks:
      features["masks"] = tfds.features.Tensor(shape=(c.views, c.height, c.width), dtype=np.uint8,
                                               encoding=tfds.features.Encoding.ZLIB)
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict(features), supervised_keys=None,
        metadata=tfds.core.MetadataDict(
            source=c.source, format=c.fmt, scene_radius=c.scene_radius, scene_centre=c.scene_centre.tolist(),
            camera_distance=c.camera_distance, has_masks=c.has_masks, has_depths=False, num_views=c.views,
            height=c.height, width=c.width, background=c.background.tolist(), fov_degrees=c.fov_degrees))

  def _shard_iterators_per_split(self, dl_manager):
    del dl_manager
    c = self.builder_config
    out = {}
    for split, folders in c.scenes.items():
      def shard(start, stop, folders=folders, split=split):
        def examples():
          for i in range(start, stop):
            yield i, self._example(i, Path(folders[i]))
            if i % 100 == 99:
              print(f"  {split}: {i + 1}/{len(folders)} scenes", flush=True)
        return examples
      out[split] = [shard(a, min(a + SHARD_SIZE, len(folders))) for a in range(0, len(folders), SHARD_SIZE)]
    return out

  def _example(self, index: int, folder: Path) -> dict:
    c = self.builder_config
    scene = formats.read_scene(folder, c.fmt, c.background)
    keep = pick_views(len(scene["images"]), c.views)
    scene = {k: (v[keep] if isinstance(v, np.ndarray) and k != "background" else v) for k, v in scene.items()}
    scene = resize(scene, c.height, c.width)
    c2w = scene["cam_to_world"].copy()
    c2w[:, :3, 3] -= c.scene_centre.astype(np.float32)
    background = scene["background"] if scene["background"] is not None else c.background
    ex = {"scene_id": index, "scene_name": folder.name, "images": [shards.png(x) for x in scene["images"]],
          "intrinsics": scene["intrinsics"], "cam_to_world": c2w, "background": background}
    if c.has_masks:
      ex["masks"] = scene["masks"]
    return ex


def plan(name: str, source: str, fmt: str, *, views: int | None = None, resolution: int | None = None,
         background=(1.0, 1.0, 1.0), scene_radius: float | None = None, scene_centre=None,
         split_file: str | None = None) -> MultiviewConfig:
  """Reads every scene's cameras (no pixels), checks them, and decides views, size and bounds."""
  scenes = formats.find_scenes(source, fmt, split_file)
  counts, sizes, has_masks, cams = {}, {}, True, []
  total = sum(len(f) for f in scenes.values())
  print(f"Checking {total} {fmt} scenes in {source} ({', '.join(f'{k}: {len(v)}' for k, v in scenes.items())}) ...",
        flush=True)
  for split, folders in scenes.items():
    for folder in folders:
      s = formats.read_scene(folder, fmt, background, pixels=False)
      counts[folder] = len(s["images"])
      sizes[folder] = s["images"].shape[1:3]
      has_masks &= s["masks"] is not None
      if split == "train" or "train" not in scenes:
        cams.append((s["cam_to_world"], s["intrinsics"], s["images"].shape[1:3]))
  fewest = min(counts.values())
  if views is None:
    views = fewest
  elif views > fewest:
    low = min(counts, key=counts.get)
    raise ConversionError(f"--views={views}, but {low} has only {fewest} views. Pass --views={fewest} or less, "
                          f"or remove that scene.")
  if views < 2:
    raise ConversionError(f"Scenes need at least 2 views (the fewest has {fewest}).")
  if resolution:
    h0, w0 = next(iter(sizes.values()))
    height, width = resolution, max(1, round(resolution * w0 / h0))
  else:
    distinct = set(sizes.values())
    if len(distinct) > 1:
      raise ConversionError(f"Scenes have different image sizes ({', '.join(f'{w}x{h}' for h, w in sorted(distinct))}). "
                            f"Pass --resolution=H to resize them all.")
    height, width = next(iter(distinct))
  # Bounds from the cameras at the output size (intrinsics scaled like the images).
  c2w = np.concatenate([c for c, _, _ in cams])
  intr = np.concatenate([i * np.array([width / w, height / h] * 2) for _, i, (h, w) in cams])
  est_centre, est_radius = estimate_bounds(c2w, intr, height, width)
  centre = np.asarray(scene_centre if scene_centre is not None else est_centre, np.float64)
  if scene_centre is None and np.linalg.norm(centre) < 1e-3 * np.median(np.linalg.norm(c2w[:, :3, 3], axis=-1)):
    centre = np.zeros(3)  # the cameras already look at the origin: leave the poses as they are
  radius = float(scene_radius or est_radius)
  dists = np.linalg.norm(c2w[:, :3, 3] - centre, axis=-1)
  distance = float(np.median(dists))
  if radius >= dists.min():
    raise ConversionError(f"--scene_radius={radius:g} puts cameras inside the scene's sphere (the nearest camera is "
                          f"{dists.min():.3g} from its centre). Pass a smaller radius.")
  print(f"  {views} views per scene (fewest in a scene: {fewest}), {height}x{width}, scene sphere centre "
        f"{np.round(centre, 4).tolist()} radius {radius:.4g} ({'given' if scene_radius else 'estimated'}), "
        f"cameras at median distance {distance:.4g}, masks: {'yes' if has_masks else 'no'}", flush=True)
  return MultiviewConfig(name, source=str(source), fmt=fmt, scenes={k: [str(f) for f in v] for k, v in scenes.items()},
                         views=views, height=height, width=width, has_masks=has_masks, background=background,
                         scene_radius=radius, scene_centre=centre, camera_distance=distance,
                         fov_degrees=float(np.degrees(np.median(2 * np.arctan(0.5 * width / intr[:, 0])))))


def convert(name: str, source: str, fmt: str, data_dir: str, **options) -> Path:
  """Checks and converts ``source`` into ``data_dir/multiview/<name>``; returns the built folder."""
  done = build.built_dir(f"multiview/{name}", data_dir)
  if done is not None:
    print(f"multiview/{name} is already built in {done}; delete that folder to convert again.", flush=True)
    return done
  config = plan(name, source, fmt, **options)
  start = time.time()
  builder = Multiview(config=config, data_dir=data_dir)
  builder.download_and_prepare(file_format="array_record",
                               download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  n = sum(len(v) for v in config.scenes.values())
  print(f"Converted {n} scenes into multiview/{name} in {time.time() - start:.0f} s: {builder.data_dir}", flush=True)
  return Path(builder.data_dir)
