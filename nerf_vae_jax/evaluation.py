"""Novel-view evaluation from context views, against the mean-colour baseline,
and orbit cameras for videos."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from nerf_vae_jax import geometry
from nerf_vae_jax.models import nerf_vae


def psnr_np(mse: float) -> float:
  return float(-10.0 * np.log10(max(mse, 1e-10)))


@functools.partial(jax.jit, static_argnums=(0, 6, 7))
def _infer_and_render(model, params, context, target_intrinsics, target_cam_to_world, key, height, width):
  mean, _ = model.apply(params, *context, method=nerf_vae.NeRFVAE.infer)
  return nerf_vae.render_views(model, params, mean, target_intrinsics, target_cam_to_world, height, width)


def novel_views(model, params, scene: dict, num_context: int) -> dict:
  """Infers a scene from its first ``num_context`` views and renders the others.

  Returns context [K, H, W, 3], target and prediction uint8 [V-K, H, W, 3],
  depth [V-K, H, W], and the mse of the prediction and of the baseline that
  paints every pixel with the mean colour of the context views.
  """
  h, w = scene["images"].shape[1:3]
  c, t = slice(0, num_context), slice(num_context, None)
  context = (scene["images"][None, c], scene["intrinsics"][None, c], scene["cam_to_world"][None, c],
             np.ones((1, num_context), bool))
  out = _infer_and_render(model, params, context, scene["intrinsics"][None, t], scene["cam_to_world"][None, t],
                          jax.random.PRNGKey(0), h, w)
  target = scene["images"][t] / 255.0
  pred = np.asarray(out["rgb"][0])
  mean_colour = scene["images"][c].reshape(-1, 3).mean(0) / 255.0
  return {"context": scene["images"][c], "target": scene["images"][t],
          "prediction": (np.clip(pred, 0, 1) * 255).round().astype(np.uint8), "depth": np.asarray(out["depth"][0]),
          "mse": float(np.mean((pred - target) ** 2)), "baseline_mse": float(np.mean((mean_colour - target) ** 2))}


def orbit_cameras(spec, num: int, distance: float = 3.0, elevation_degrees: float = 30.0):
  """(intrinsics [num, 4], cam_to_world [num, 4, 4]) circling the scene."""
  a = np.linspace(0, 2 * np.pi, num, endpoint=False)
  e = np.deg2rad(elevation_degrees)
  pos = distance * np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.full(num, np.sin(e))], -1)
  c2w = geometry.look_at(pos, xp=np).astype(np.float32)
  intr = np.tile(geometry.intrinsics_from_fov(spec.fov_degrees, spec.height, spec.width), (num, 1))
  return intr, c2w


def render_orbit(model, params, scene: dict, num_context: int, spec, num_frames: int = 24) -> np.ndarray:
  """uint8 [F, H, W, 3] frames of the scene inferred from its context views."""
  intr, c2w = orbit_cameras(spec, num_frames)
  c = slice(0, num_context)
  context = (scene["images"][None, c], scene["intrinsics"][None, c], scene["cam_to_world"][None, c],
             np.ones((1, num_context), bool))
  out = _infer_and_render(model, params, context, jnp.asarray(intr)[None], jnp.asarray(c2w)[None],
                          jax.random.PRNGKey(0), spec.height, spec.width)
  return (np.clip(np.asarray(out["rgb"][0]), 0, 1) * 255).round().astype(np.uint8)
