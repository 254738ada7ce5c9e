"""The pixels the likelihood is estimated from: ray sampling with importance weights.

A training step does not render whole images: it draws R pixels per scene
from the views the likelihood scores, each with the weight 1 / (R p) of its
sampling probability p, so that a weighted sum over the rays is an unbiased
estimate of a sum over every real pixel (``objectives.ray_log_likelihood``).
Shapes: B scenes, V views, R rays.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from nerf_vae_jax import errors, geometry


class Rays(NamedTuple):
  """Pixels drawn from a batch's views, with what each stands for.

  origins, directions [B, R, 3] (unit), colours [B, R, 3] in [0, 1];
  weights [B, R] = 1 / (R x the ray's sampling probability), so that
  sum_r weights_r f(ray r) estimates the sum of f over every real pixel
  without bias; pixels [B], the number of real pixels (the weights' mean sum).
  """
  origins: jax.Array
  directions: jax.Array
  colours: jax.Array
  weights: jax.Array
  pixels: jax.Array


def objectness(images, threshold: float = 0.05):
  """Likely-object pixels, from the images alone: float [B, V, H, W] in {0, 1}.

  A pixel is 'object' where some channel differs by more than ``threshold``
  from its view's border colour (the median of the border pixels), which is
  the background of a scene against a plain backdrop. Shadows count too; on
  captured data this is a heuristic, and the sampler stays unbiased whatever
  it says (``sample_rays``).
  """
  x = images.astype(jnp.float32) / 255.0
  border = jnp.concatenate([x[:, :, 0], x[:, :, -1], x[:, :, :, 0], x[:, :, :, -1]], axis=2)  # [B, V, 2H+2W, 3]
  background = jnp.median(border, axis=2)  # [B, V, 3]
  diff = jnp.max(jnp.abs(x - background[:, :, None, None]), axis=-1)
  return (diff > threshold).astype(jnp.float32)


def sample_rays(images, intrinsics, cam_to_world, key, num_rays: int, view_mask=None,
                object_fraction: float = 0.0) -> Rays:
  """``num_rays`` pixels per scene from the real views [B, V, ...], with importance weights.

  Each pixel's probability mixes a uniform distribution over the real views'
  pixels (weight 1 - object_fraction) and a uniform distribution over their
  likely-object pixels (``objectness``; weight object_fraction; uniform over
  all pixels where a scene has none). Pixels are drawn by stratified inversion
  of the CDF, and every ray is weighted by 1 / (R p): an unbiased estimate of
  sums over whole images for any object_fraction in [0, 1).

  Args:
    images: uint8 [B, V, H, W, 3]; intrinsics [B, V, 4]; cam_to_world [B, V, 4, 4].
    view_mask: bool [B, V], which views are real (None: all).
  Rays are computed on the device from the cameras.
  """
  b, v, h, w, _ = images.shape
  n = v * h * w
  real = jnp.ones((b, v), jnp.float32) if view_mask is None else view_mask.astype(jnp.float32)
  real_px = jnp.broadcast_to(real[:, :, None, None], (b, v, h, w)).reshape(b, n)
  pixels = jnp.sum(real_px, axis=1)
  p = real_px / pixels[:, None]
  if object_fraction > 0:
    obj = objectness(images).reshape(b, n) * real_px
    total = jnp.sum(obj, axis=1, keepdims=True)
    p = (1.0 - object_fraction) * p + object_fraction * jnp.where(total > 0, obj / jnp.maximum(total, 1.0), p)
  idx = invert_cdf(p, jax.random.uniform(key, (b, num_rays)))
  weights = 1.0 / (num_rays * jnp.take_along_axis(p, idx, axis=1))
  o, d = geometry.pixel_rays(intrinsics, cam_to_world, h, w)
  pick = lambda x: jnp.take_along_axis(x.reshape(b, n, -1), idx[..., None], axis=1)
  return Rays(pick(o), pick(d), pick(images).astype(jnp.float32) / 255.0, weights, pixels)


def invert_cdf(p, uniform, cumsum=None):
  """Stratified draws [B, R] of indices from probabilities p [B, N], never one with p = 0.

  uniform: [B, R] in [0, 1); cumsum: p's cumulative sum along axis 1 (None:
  computed here; the tests pass a badly rounded one).
  Float32 cumulative sums are not exactly monotone (XLA's parallel scans
  round each element differently): on a stretch of p = 0 (a padding view)
  the sum can dip by one ulp, a binary search can then stop inside the
  stretch, and that ray's weight 1 / (R p) is infinite (the loss became
  -inf at object_fraction 0.9). Holding the CDF exactly flat where p = 0,
  and monotone elsewhere, makes the smallest i with cdf_i >= u always have
  p_i > 0.
  """
  cumsum = jnp.cumsum(p, axis=1) if cumsum is None else cumsum
  cdf = jax.lax.cummax(jnp.where(p > 0, cumsum, -jnp.inf), axis=1)
  r = uniform.shape[1]
  u = (jnp.arange(r) + uniform) / r * cdf[:, -1:]
  return jnp.minimum(jax.vmap(jnp.searchsorted)(cdf, u), p.shape[1] - 1)


def target_rays(batch: dict, key, num_rays: int, object_fraction: float = 0.0) -> Rays:
  """``sample_rays`` of a batch's target views (uniform by default)."""
  return sample_rays(batch["target_images"], batch["target_intrinsics"], batch["target_cam_to_world"], key,
                     num_rays, object_fraction=object_fraction)


def training_rays(batch: dict, key, num_rays: int, *, targets: str = "held_out",
                  object_fraction: float = 0.0) -> Rays:
  """The rays the ELBO is estimated from.

  targets: "held_out" (the target views only: the reference) or "all" (the
  real context views too, as in a plain VAE: the latent must explain what
  was seen).
  """
  if targets == "held_out":
    return target_rays(batch, key, num_rays, object_fraction)
  if targets != "all":
    raise errors.ConfigError(f"config.loss.targets={targets!r}; choose held_out or all.")
  cat = lambda k: jnp.concatenate([batch[f"context_{k}"], batch[f"target_{k}"]], axis=1)
  mask = jnp.concatenate([batch["context_mask"], jnp.ones(batch["target_images"].shape[:2], bool)], axis=1)
  return sample_rays(cat("images"), cat("intrinsics"), cat("cam_to_world"), key, num_rays, mask, object_fraction)
