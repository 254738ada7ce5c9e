"""NeRF-VAE: encode context views, average their posteriors, sample a latent,
march rays through the latent-conditioned scene function, composite.

``NeRFVAE`` is a Flax Linen module with three methods used through
``model.apply(params, ..., method=...)``:

* ``infer(context)`` -> posterior (mean, scale); ``context`` is a batch (or
  its context part, ``batch.context``), see ``nerf_vae_jax/batch.py``
* ``render_rays(latent, origins, directions, key, randomized)`` -> coarse and fine renders
* ``__call__`` (for ``init``): both.

The functions below build on it. ``ray_log_likelihood`` is the one place
where the likelihood of pixels is computed and rescaled to whole images:
the ELBO, the IWAE bound, evaluation and test-time refinement all call it.
Shapes: B scenes, K context views, T target views, R rays, S samples per ray.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from nerf_vae_jax import errors, geometry, rendering
from nerf_vae_jax.evaluation import metrics as metrics_lib
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

  def infer(self, context: dict):
    """The posterior over the scene latent from K context views.

    Args:
      context: a dict with context_images uint8 [B, K, H, W, 3],
        context_intrinsics [B, K, 4], context_cam_to_world [B, K, 4, 4] and
        context_mask bool [B, K] (which views are real); other keys are ignored.

    Returns:
      (mean, scale), each [B, *latent_shape].
    """
    images, mask = context["context_images"], context["context_mask"]
    intrinsics, cam_to_world = context["context_intrinsics"], context["context_cam_to_world"]
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

  def __call__(self, context, origins, directions, key):
    mean, _ = self.infer(context)
    return self.render_rays(mean, origins, directions, key)


def from_config(config, scene_radius: float) -> NeRFVAE:
  """The model of an ml-collections ``config.model``."""
  choices = {"latent": ("global", "attentive"), "posterior": tuple(posterior.COMBINE), "dtype": ("float32", "bfloat16")}
  for field, allowed in choices.items():
    if config[field] not in allowed:
      raise errors.ConfigError(f"config.model.{field}={config[field]!r}; choose one of {', '.join(allowed)}.")
  dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[config.dtype]
  fields = {k: v for k, v in config.items() if k != "dtype"}
  fields["encoder_channels"] = tuple(fields["encoder_channels"])
  return NeRFVAE(scene_radius=scene_radius, dtype=dtype, **fields)


def infer(model: NeRFVAE, params, context: dict):
  """The posterior (mean, scale) [B, *latent_shape] of a batch's context views."""
  return model.apply(params, context, method=NeRFVAE.infer)


def sample_latent(key, mean, scale):
  """A reparameterised sample mean + scale * eps."""
  return mean + scale * jax.random.normal(key, mean.shape)


class Rays(NamedTuple):
  """Pixels drawn from a batch's views, with what each stands for.

  origins, directions [B, R, 3] (unit), colours [B, R, 3] in [0, 1], and
  pixels_per_ray [B]: the number of image pixels each ray stands for, so that
  a sum over rays times it estimates the sum over all pixels without bias.
  """
  origins: jax.Array
  directions: jax.Array
  colours: jax.Array
  pixels_per_ray: jax.Array


def sample_rays(images, intrinsics, cam_to_world, key, num_rays: int, num_views=None) -> Rays:
  """``num_rays`` pixels per scene, uniformly with replacement, from views [B, V, ...].

  Args:
    images: uint8 [B, V, H, W, 3]; intrinsics [B, V, 4]; cam_to_world [B, V, 4, 4].
    num_views: int [B], how many of the leading views are real (None: all V).
      Rays are computed on the device from the cameras.
  """
  b, v, h, w, _ = images.shape
  o, d = geometry.pixel_rays(intrinsics, cam_to_world, h, w)
  if num_views is None:
    idx = jax.random.randint(key, (b, num_rays, 1), 0, v * h * w)
    pixels = jnp.full((b,), v * h * w / num_rays, jnp.float32)
  else:
    k_view, k_pixel = jax.random.split(key)
    view = jax.random.randint(k_view, (b, num_rays), 0, num_views[:, None])
    idx = (view * h * w + jax.random.randint(k_pixel, (b, num_rays), 0, h * w))[..., None]
    pixels = (num_views * (h * w)).astype(jnp.float32) / num_rays
  pick = lambda x: jnp.take_along_axis(x.reshape(b, v * h * w, -1), idx, axis=1)
  return Rays(pick(o), pick(d), pick(images).astype(jnp.float32) / 255.0, pixels)


def target_rays(batch: dict, key, num_rays: int) -> Rays:
  """``sample_rays`` of a batch's target views."""
  return sample_rays(batch["target_images"], batch["target_intrinsics"], batch["target_cam_to_world"], key,
                     num_rays)


def gaussian_log_likelihood(x, mean, scale: float):
  """log N(x; mean, scale^2) of each colour channel: [..., 3] -> [..., 3]."""
  return -0.5 * jnp.square((x - mean) / scale) - math.log(scale) - 0.5 * math.log(2 * math.pi)


def ray_log_likelihood(model: NeRFVAE, params, latent, rays: Rays, key, *, likelihood_scale: float,
                       randomized: bool = True):
  """log p(pixels | latent) of whole images, estimated from ``rays``.

  The Gaussian log-likelihood of each ray's colour under the rendered colour,
  summed over rays and channels and multiplied by the pixels each ray stands
  for: an unbiased estimate of the log-likelihood of every pixel of the views
  the rays were drawn from.

  Returns:
    ({"fine": [B], "coarse": [B]} log-likelihoods in nats, the render of
    ``NeRFVAE.render_rays``).
  """
  out = model.apply(params, latent, rays.origins, rays.directions, key, randomized, method=NeRFVAE.render_rays)
  ll = {p: jnp.sum(gaussian_log_likelihood(rays.colours, out[p]["rgb"], likelihood_scale), axis=(1, 2))
        * rays.pixels_per_ray for p in ("fine", "coarse")}
  return ll, out


def elbo_loss(model: NeRFVAE, params, batch, key, *, num_rays: int, likelihood_scale: float, beta=1.0,
              free_bits: float = 0.0, coarse_weight: float = 0.1):
  """The training loss and its metrics.

  The ELBO per scene is the log-likelihood of the whole target images
  (``ray_log_likelihood`` of R random target rays) minus KL(q(z | context) ||
  N(0, I)). The loss is -(LL - beta * max(KL, free_bits) + coarse_weight *
  LL_coarse), averaged over scenes and divided by the number of target pixels
  (a constant, which keeps the numbers readable). LL_coarse trains the coarse
  pass, as in NeRF.

  Returns:
    (loss, metrics): metrics hold per-pixel ELBO, log-likelihood and KL (in
    nats), the KL per scene, the fine pass's MSE and PSNR, and beta.
  """
  k_z, k_rays, k_render = jax.random.split(key, 3)
  mean, scale = infer(model, params, batch)
  z = sample_latent(k_z, mean, scale)
  rays = target_rays(batch, k_rays, num_rays)
  ll, out = ray_log_likelihood(model, params, z, rays, k_render, likelihood_scale=likelihood_scale)
  _, t, h, w, _ = batch["target_images"].shape
  pixels = t * h * w
  kl = posterior.kl_to_standard_normal(mean, scale)
  objective = ll["fine"] - beta * jnp.maximum(kl, free_bits) + coarse_weight * ll["coarse"]
  loss = -jnp.mean(objective) / pixels
  mse = jnp.mean(jnp.square(out["fine"]["rgb"] - rays.colours))
  metrics = {
      "loss": loss, "elbo_per_pixel": jnp.mean(ll["fine"] - kl) / pixels,
      "ll_per_pixel": jnp.mean(ll["fine"]) / pixels, "kl_per_pixel": jnp.mean(kl) / pixels, "kl": jnp.mean(kl),
      "mse": mse, "psnr": metrics_lib.psnr(mse, jnp), "mse_coarse": jnp.mean(jnp.square(out["coarse"]["rgb"] - rays.colours)),
      "beta": jnp.asarray(beta, jnp.float32),
  }
  return loss, metrics


def posterior_samples(model: NeRFVAE, params, mean, scale, rays: Rays, key, *, num_samples: int,
                      likelihood_scale: float):
  """log p(x | z_s) and log p(z_s) - log q(z_s | context) for S posterior samples, each [S, B].

  x is what ``rays`` stand for (whole images); rendering is deterministic.
  The ELBO is the mean of the first minus KL; the IWAE bound is
  ``iwae(*posterior_samples(...))``.
  """
  def one(k):
    z = sample_latent(k, mean, scale)
    ll, _ = ray_log_likelihood(model, params, z, rays, k, likelihood_scale=likelihood_scale, randomized=False)
    zero, one_ = jnp.zeros_like(z), jnp.ones_like(z)
    return ll["fine"], posterior.log_normal(z, zero, one_) - posterior.log_normal(z, mean, scale)

  return jax.lax.map(one, jax.random.split(key, num_samples))


def iwae(log_likelihood, log_ratio):
  """Importance-weighted bound [B] from ``posterior_samples``' [S, B] arrays."""
  return jax.nn.logsumexp(log_likelihood + log_ratio, axis=0) - math.log(log_likelihood.shape[0])


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
