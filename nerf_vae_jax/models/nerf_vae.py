"""NeRF-VAE: encode context views, average their posteriors, sample a latent,
march rays through the latent-conditioned scene function, composite.

``NeRFVAE`` is a Flax Linen module with three methods used through
``model.apply(params, ..., method=...)``:

* ``infer(images, intrinsics, cam_to_world, mask)`` -> posterior (mean, scale)
* ``render_rays(latent, origins, directions, key, randomized)`` -> coarse and fine renders
* ``__call__`` (for ``init``): both.

The module functions below build on it: the ELBO training loss, the IWAE
bound, prior sampling and chunked rendering of whole cameras. Shapes: B
scenes, K context views, T target views, R rays, S samples per ray.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from nerf_vae_jax import geometry, rendering
from nerf_vae_jax.models import posterior
from nerf_vae_jax.models.encoder import Encoder
from nerf_vae_jax.models.scene_function import BackgroundHead, SceneFunction


class NeRFVAE(nn.Module):
  latent: str = "global"  # "global": z [D]; "attentive": z [num_tokens, D]
  latent_dim: int = 128
  num_tokens: int = 64
  encoder_channels: Sequence[int] = (32, 64, 128)
  encoder_cells: int = 1
  mlp_width: int = 128
  mlp_depth: int = 4
  position_frequencies: int = 8
  direction_frequencies: int = 3
  num_heads: int = 4
  num_coarse: int = 32
  num_fine: int = 32
  scene_radius: float = 1.0
  posterior: str = "average"  # or "poe"
  dtype: Any = jnp.float32  # matmul dtype in the encoder and the MLP

  @property
  def latent_shape(self) -> tuple[int, ...]:
    return (self.latent_dim,) if self.latent == "global" else (self.num_tokens, self.latent_dim)

  def setup(self):
    if self.posterior not in posterior.COMBINE:
      raise ValueError(f"posterior must be one of {list(posterior.COMBINE)}, not {self.posterior!r}")
    self.encoder = Encoder(channels=tuple(self.encoder_channels), cells_per_stage=self.encoder_cells,
                           num_outputs=2 * math.prod(self.latent_shape), dtype=self.dtype)
    self.scene_function = SceneFunction(
        width=self.mlp_width, depth=self.mlp_depth, position_frequencies=self.position_frequencies,
        direction_frequencies=self.direction_frequencies, conditioning=self.latent, num_heads=self.num_heads,
        scene_radius=self.scene_radius, dtype=self.dtype)
    self.background = BackgroundHead()

  def infer(self, images, intrinsics, cam_to_world, mask):
    """The posterior over the scene latent from K context views.

    Args:
      images: uint8 [B, K, H, W, 3]; intrinsics [B, K, 4]; cam_to_world
        [B, K, 4, 4]; mask: bool [B, K], which views are real.

    Returns:
      (mean, scale), each [B, *latent_shape].
    """
    b, k, h, w, _ = images.shape
    o, d = geometry.pixel_rays(intrinsics, cam_to_world, h, w)
    rays = geometry.plucker(o / self.scene_radius, d)
    x = images.astype(jnp.float32) / 127.5 - 1.0
    out = self.encoder(x.reshape(b * k, h, w, 3), rays.reshape(b * k, h, w, 6))
    out = out.reshape((b, k, 2) + self.latent_shape)
    return posterior.COMBINE[self.posterior](out[:, :, 0], out[:, :, 1], mask)

  def render_rays(self, latent, origins, directions, key, randomized: bool = True):
    """Coarse and fine volume renders of rays [B, R, 3] given latents [B, ...].

    See ``rendering.render_coarse_fine``: {"coarse": ..., "fine": ...}, each
    a dict of rgb [B, R, 3], depth, acc [B, R] and weights [B, R, S].
    """
    return rendering.render_coarse_fine(
        lambda x, d: self.scene_function(x, d, latent), self.background(latent)[:, None, :], origins,
        directions, key, num_coarse=self.num_coarse, num_fine=self.num_fine, scene_radius=self.scene_radius,
        randomized=randomized)

  def __call__(self, images, intrinsics, cam_to_world, mask, origins, directions, key):
    mean, _ = self.infer(images, intrinsics, cam_to_world, mask)
    return self.render_rays(mean, origins, directions, key)


def from_config(config, scene_radius: float) -> NeRFVAE:
  """The model of an ml-collections ``config.model``."""
  choices = {"latent": ("global", "attentive"), "posterior": tuple(posterior.COMBINE), "dtype": ("float32", "bfloat16")}
  for field, allowed in choices.items():
    if config[field] not in allowed:
      raise ValueError(f"config.model.{field}={config[field]!r}; choose one of {', '.join(allowed)}.")
  dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[config.dtype]
  fields = {k: v for k, v in config.items() if k != "dtype"}
  fields["encoder_channels"] = tuple(fields["encoder_channels"])
  return NeRFVAE(scene_radius=scene_radius, dtype=dtype, **fields)


def sample_latent(key, mean, scale):
  """A reparameterised sample mean + scale * eps."""
  return mean + scale * jax.random.normal(key, mean.shape)


def target_rays(batch, key, num_rays: int):
  """num_rays random pixels (with replacement) of each scene's target views.

  Returns origins, directions [B, R, 3] and their true colours [B, R, 3] in
  [0, 1], computed on the device from the cameras.
  """
  images = batch["target_images"]
  b, t, h, w, _ = images.shape
  o, d = geometry.pixel_rays(batch["target_intrinsics"], batch["target_cam_to_world"], h, w)
  idx = jax.random.randint(key, (b, num_rays, 1), 0, t * h * w)
  pick = lambda x: jnp.take_along_axis(x.reshape(b, t * h * w, -1), idx, axis=1)
  return pick(o), pick(d), pick(images).astype(jnp.float32) / 255.0


def gaussian_log_likelihood(x, mean, scale: float):
  """Sum over rays and channels of log N(x; mean, scale^2): [B, R, 3] -> [B]."""
  lp = -0.5 * jnp.square((x - mean) / scale) - math.log(scale) - 0.5 * math.log(2 * math.pi)
  return jnp.sum(lp, axis=(1, 2))


def elbo_loss(model: NeRFVAE, params, batch, key, *, num_rays: int, likelihood_scale: float, beta=1.0,
              free_bits: float = 0.0, coarse_weight: float = 0.1):
  """The training loss and its metrics.

  The log-likelihood of R random target rays is rescaled by (T H W) / R, the
  number of target pixels per ray drawn, so that it is an unbiased estimate
  of the log-likelihood of the whole target images; the ELBO per scene is
  that minus KL(q(z | context) || N(0, I)). The loss is
  -(LL - beta * max(KL, free_bits) + coarse_weight * LL_coarse), averaged
  over scenes and divided by the number of target pixels (a constant, which
  keeps the numbers readable). LL_coarse trains the coarse pass, as in NeRF.

  Returns:
    (loss, metrics): metrics hold per-pixel ELBO, log-likelihood and KL (in
    nats), the KL per scene, the fine pass's MSE and PSNR, and beta.
  """
  k_z, k_rays, k_render = jax.random.split(key, 3)
  mean, scale = model.apply(params, batch["context_images"], batch["context_intrinsics"],
                            batch["context_cam_to_world"], batch["context_mask"], method=NeRFVAE.infer)
  z = sample_latent(k_z, mean, scale)
  o, d, target = target_rays(batch, k_rays, num_rays)
  out = model.apply(params, z, o, d, k_render, True, method=NeRFVAE.render_rays)
  _, t, h, w, _ = batch["target_images"].shape
  pixels = t * h * w
  rescale = pixels / num_rays
  ll = gaussian_log_likelihood(target, out["fine"]["rgb"], likelihood_scale) * rescale
  ll_coarse = gaussian_log_likelihood(target, out["coarse"]["rgb"], likelihood_scale) * rescale
  kl = posterior.kl_to_standard_normal(mean, scale)
  objective = ll - beta * jnp.maximum(kl, free_bits) + coarse_weight * ll_coarse
  loss = -jnp.mean(objective) / pixels
  mse = jnp.mean(jnp.square(out["fine"]["rgb"] - target))
  metrics = {
      "loss": loss, "elbo_per_pixel": jnp.mean(ll - kl) / pixels, "ll_per_pixel": jnp.mean(ll) / pixels,
      "kl_per_pixel": jnp.mean(kl) / pixels, "kl": jnp.mean(kl), "mse": mse, "psnr": psnr(mse),
      "mse_coarse": jnp.mean(jnp.square(out["coarse"]["rgb"] - target)), "beta": jnp.asarray(beta, jnp.float32),
  }
  return loss, metrics


def psnr(mse):
  """Peak signal-to-noise ratio in dB of colours in [0, 1]."""
  return -10.0 * jnp.log10(jnp.maximum(mse, 1e-10))


def iwae_bound(model: NeRFVAE, params, batch, key, *, num_samples: int, num_rays: int, likelihood_scale: float):
  """Importance-weighted bound with S posterior samples, per scene [B] (nats, whole target images).

  log (1/S) sum_s p(x | z_s) p(z_s) / q(z_s | context), with the same
  rescaled ray likelihood as the ELBO and deterministic ray sampling.
  """
  k_rays, k_z = jax.random.split(key)
  mean, scale = model.apply(params, batch["context_images"], batch["context_intrinsics"],
                            batch["context_cam_to_world"], batch["context_mask"], method=NeRFVAE.infer)
  o, d, target = target_rays(batch, k_rays, num_rays)
  _, t, h, w, _ = batch["target_images"].shape

  def log_weight(k):
    z = sample_latent(k, mean, scale)
    out = model.apply(params, z, o, d, k, False, method=NeRFVAE.render_rays)
    ll = gaussian_log_likelihood(target, out["fine"]["rgb"], likelihood_scale) * (t * h * w / num_rays)
    zero, one = jnp.zeros_like(z), jnp.ones_like(z)
    return ll + posterior.log_normal(z, zero, one) - posterior.log_normal(z, mean, scale)

  logw = jax.lax.map(log_weight, jax.random.split(k_z, num_samples))  # [S, B]
  return jax.nn.logsumexp(logw, axis=0) - math.log(num_samples)


def render_views(model: NeRFVAE, params, latent, intrinsics, cam_to_world, height: int, width: int,
                 chunk: int = 4096):
  """Renders whole cameras from latents [B, *latent_shape] (fine pass, deterministic sampling).

  Args:
    intrinsics [B, V, 4]; cam_to_world [B, V, 4, 4]; chunk: rays per scene at a time.

  Returns:
    dict of rgb [B, V, H, W, 3], depth and acc [B, V, H, W].
  """
  def render_rays(o, d):
    out = model.apply(params, latent, o, d, jax.random.PRNGKey(0), False, method=NeRFVAE.render_rays)["fine"]
    return {k: out[k] for k in ("rgb", "depth", "acc")}

  return rendering.render_cameras(render_rays, intrinsics, cam_to_world, height, width, chunk)


def sample_prior(key, model: NeRFVAE, num: int):
  """Latents [num, *latent_shape] from the prior N(0, I)."""
  return jax.random.normal(key, (num,) + model.latent_shape)
