"""The dataset variants of ``shape_scenes``: one table that the TFDS builder,
the input pipeline and the model (scene radius, image size) all read.

Geometry of every variant: objects rest on the invisible plane z = FLOOR_Z
inside the sphere of radius ``scene_radius`` about the world origin; cameras
look at the origin from a shell of distances and elevations (elevation = angle
above the xy plane). ``test_ood`` cameras come from outside the training
distance and elevation ranges.
"""

from __future__ import annotations

import dataclasses

from nerf_vae_jax import errors

SHAPES = ("sphere", "cube", "cylinder", "cone")
FLOOR_Z = -0.4


@dataclasses.dataclass(frozen=True)
class CameraRange:
  """Cameras on a shell about the origin. Each list entry is an interval; a
  camera draws one interval (uniformly) and then a value inside it."""
  distance: tuple[tuple[float, float], ...]
  elevation_degrees: tuple[tuple[float, float], ...]


TRAIN_CAMERAS = CameraRange(distance=((2.6, 3.4),), elevation_degrees=((15.0, 60.0),))
OOD_CAMERAS = CameraRange(distance=((3.6, 4.2),), elevation_degrees=((-15.0, 5.0), (68.0, 85.0)))


@dataclasses.dataclass(frozen=True)
class SceneSpec:
  """One variant of the dataset."""
  name: str
  height: int
  width: int
  num_views: int
  splits: dict  # split name -> number of scenes
  max_objects: int = 4
  scene_radius: float = 1.0  # every object lies inside this sphere
  fov_degrees: float = 40.0  # horizontal field of view
  supersample: int = 2  # k x k rays per pixel for the colour
  min_size: float = 0.18  # object size range (docs/data.md says what size means)
  max_size: float = 0.34
  ambient: float = 0.35
  seed: int = 0  # dataset seed: scenes are a function of (seed, split, index)
  depth_scale: float = 8000.0  # depth stored as uint16(round(depth * scale))
  dataset: str = "shape_scenes"  # the TFDS builder: shape_scenes, or multiview (converted, nerf_vae_jax/data/multiview.py)
  orbit_distance: float = 3.0  # camera distance of the evaluation's orbit videos

  @property
  def full_name(self) -> str:
    return f"{self.dataset}/{self.name}"

  def cameras(self, split: str) -> CameraRange:
    return OOD_CAMERAS if split == "test_ood" else TRAIN_CAMERAS

  @property
  def max_depth(self) -> float:
    return 65535.0 / self.depth_scale


SPECS = {
    s.name: s
    for s in (
        SceneSpec("tiny", 32, 32, 8, {"train": 512, "test": 64, "test_ood": 64}),
        # 32px: tiny's scenes, enough of them that long CPU runs do not memorise the training set.
        SceneSpec("32px", 32, 32, 8, {"train": 20_000, "test": 256, "test_ood": 64}),
        SceneSpec("64px", 64, 64, 10, {"train": 200_000, "test": 2_000, "test_ood": 2_000}),
        # 64px_mini: scenes exactly like 64px's, few of them (benchmarks, smoke tests).
        SceneSpec("64px_mini", 64, 64, 10, {"train": 512, "test": 64, "test_ood": 64}),
        # dense: 100 training views for the per-scene NeRF, then 10 held out.
        SceneSpec("dense", 64, 64, 110, {"test": 50}),
    )
}
DEFAULT = "64px"


def get_spec(name: str) -> SceneSpec:
  """The spec of a variant, or a ConfigError that lists the known ones."""
  if name not in SPECS:
    raise errors.ConfigError(
        f"Unknown shape_scenes config {name!r}; known configs: {', '.join(SPECS)}. "
        f"Use e.g. 'shape_scenes/tiny'.")
  return SPECS[name]


def parse_name(name: str) -> SceneSpec:
  """A TFDS name, 'shape_scenes/tiny' (or 'shape_scenes' for the default), -> its spec."""
  dataset, _, config = name.partition("/")
  if dataset != "shape_scenes":
    raise errors.ConfigError(
        f"Unknown dataset {dataset!r} in {name!r}: use 'shape_scenes/<config>' with config one of "
        f"{', '.join(SPECS)}, or 'multiview/<name>' for a converted dataset.")
  return get_spec(config or DEFAULT)
