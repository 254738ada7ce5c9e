"""Random scene and camera sampling (NumPy, on the host).

A scene is a pure function of (spec.seed, split, index): any process can make
any scene, so sharded and parallel generation give the same bytes as serial.

Objects (see ``specs.SHAPES``), each described in its local frame (centre at
the origin, then rotated by ``rotation`` radians about z and moved to
``position``); ``size`` s is:
  sphere:   radius s;
  cube:     half the edge length (the cube spans [-s, s]^3);
  cylinder: radius s and half-height s (axis along z);
  cone:     base radius s and half-height s (base at z = -s, apex at z = +s).
Every object rests on the plane z = FLOOR_Z, so its centre is at z = FLOOR_Z + s.
"""

from __future__ import annotations

import colorsys

import numpy as np

from nerf_vae_jax import geometry
from nerf_vae_jax.scenes import specs

SPLIT_IDS = {"train": 0, "test": 1, "test_ood": 2}
# Radius, about the centre, of each shape's bounding sphere and of its
# footprint on the floor (per unit size); used for placement.
_BOUND_3D = np.array([1.0, np.sqrt(3.0), np.sqrt(2.0), np.sqrt(2.0)])
_BOUND_XY = np.array([1.0, np.sqrt(2.0), 1.0, 1.0])
_GAP = 0.02  # minimum floor clearance between two objects' footprints


def _hsv(rng, s_range, v_range):
  h = rng.uniform()
  return np.array(colorsys.hsv_to_rgb(h, rng.uniform(*s_range), rng.uniform(*v_range)), np.float32)


def _interval(rng, intervals):
  lo, hi = intervals[rng.integers(len(intervals))]
  return rng.uniform(lo, hi)


def sample_objects(rng: np.random.Generator, spec: specs.SceneSpec) -> dict:
  """1..max_objects non-intersecting objects inside the scene sphere.

  Returns a dict of arrays padded to max_objects (``valid`` marks the real ones):
  shape int32 [N], position float32 [N, 3], size, rotation float32 [N],
  color float32 [N, 3], valid bool [N].
  """
  n = spec.max_objects
  want = int(rng.integers(1, n + 1))
  out = dict(shape=np.zeros(n, np.int32), position=np.zeros((n, 3), np.float32),
             size=np.zeros(n, np.float32), rotation=np.zeros(n, np.float32),
             color=np.zeros((n, 3), np.float32), valid=np.zeros(n, bool))
  k = 0
  for _ in range(50 * n):  # rejection sampling; gives up quietly on a full floor
    if k == want:
      break
    shape = int(rng.integers(len(specs.SHAPES)))
    size = rng.uniform(spec.min_size, spec.max_size)
    z = specs.FLOOR_Z + size
    slack = spec.scene_radius - _BOUND_3D[shape] * size  # room left for |centre|
    if slack <= abs(z):
      continue
    reach = np.sqrt(slack**2 - z**2)  # the centre's largest distance from the z axis
    r, a = reach * np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
    xy = np.array([r * np.cos(a), r * np.sin(a)])
    clear = all(
        np.linalg.norm(xy - out["position"][i, :2])
        >= _BOUND_XY[shape] * size + _BOUND_XY[out["shape"][i]] * out["size"][i] + _GAP
        for i in range(k))
    if not clear:
      continue
    out["shape"][k] = shape
    out["position"][k] = (xy[0], xy[1], z)
    out["size"][k] = size
    out["rotation"][k] = rng.uniform(0, 2 * np.pi)
    out["color"][k] = _hsv(rng, (0.45, 1.0), (0.45, 1.0))
    out["valid"][k] = True
    k += 1
  return out


def sample_cameras(rng: np.random.Generator, spec: specs.SceneSpec, split: str, num_views: int):
  """Cameras looking at the origin from the split's shell.

  Returns (intrinsics [V, 4], cam_to_world [V, 4, 4]), float32.
  """
  cams = spec.cameras(split)
  pos = []
  for _ in range(num_views):
    d = _interval(rng, cams.distance)
    e = np.deg2rad(_interval(rng, cams.elevation_degrees))
    a = rng.uniform(0, 2 * np.pi)
    pos.append(geometry.on_sphere(d, a, e))
  cam_to_world = geometry.look_at(np.array(pos, np.float64), xp=np).astype(np.float32)
  intrinsics = np.tile(geometry.intrinsics_from_fov(spec.fov_degrees, spec.height, spec.width), (num_views, 1))
  return intrinsics, cam_to_world


def sample_scene(spec: specs.SceneSpec, split: str, index: int) -> dict:
  """Scene ``index`` of ``split``: objects, background, light and cameras.

  Returns the arrays of ``sample_objects`` plus background float32 [3] in
  [0, 1], light_direction float32 [3] (unit, pointing towards the light),
  intrinsics float32 [V, 4] and cam_to_world float32 [V, 4, 4].
  """
  if split not in SPLIT_IDS:
    raise ValueError(f"Unknown split {split!r}; expected one of {list(SPLIT_IDS)}.")
  rng = np.random.default_rng([spec.seed, SPLIT_IDS[split], index])
  scene = sample_objects(rng, spec)
  scene["background"] = _hsv(rng, (0.0, 0.5), (0.15, 0.95))
  le, la = np.deg2rad(rng.uniform(35, 75)), rng.uniform(0, 2 * np.pi)
  scene["light_direction"] = geometry.on_sphere(1.0, la, le).astype(np.float32)
  scene["intrinsics"], scene["cam_to_world"] = sample_cameras(rng, spec, split, spec.num_views)
  return scene


def stack(scenes: list[dict]) -> dict:
  """Stacks a list of per-scene dicts along a new leading axis."""
  return {k: np.stack([s[k] for s in scenes]) for k in scenes[0]}
