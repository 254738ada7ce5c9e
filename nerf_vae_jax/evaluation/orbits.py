"""Cameras circling a scene, and a scene inferred from its views rendered from them (GIFs, timing)."""

from __future__ import annotations

import numpy as np

from nerf_vae_jax import batching, geometry, visualize
from nerf_vae_jax.evaluation import protocol


def orbit_cameras(spec, num: int, distance: float | None = None, elevation_degrees: float = 30.0):
  """(intrinsics [num, 4], cam_to_world [num, 4, 4]) circling the scene (default distance: the spec's)."""
  distance = distance or spec.orbit_distance
  azimuth = np.linspace(0, 2 * np.pi, num, endpoint=False)
  c2w = geometry.look_at(geometry.on_sphere(distance, azimuth, np.full(num, np.deg2rad(elevation_degrees))),
                         xp=np).astype(np.float32)
  intr = np.tile(geometry.intrinsics_from_fov(spec.fov_degrees, spec.height, spec.width), (num, 1))
  return intr.astype(np.float32), c2w


def render_orbit(model, params, scene: dict, num_context: int, spec, num_frames: int = 24) -> np.ndarray:
  """uint8 [F, H, W, 3] frames of the scene inferred from its first ``num_context`` views."""
  intr, c2w = orbit_cameras(spec, num_frames)
  context = batching.context(protocol.context_batch([scene], num_context))
  out = protocol.infer_and_render(model, params, context, (intr[None], c2w[None]), spec.height, spec.width)
  return visualize.to_uint8(out["rgb"][0])
