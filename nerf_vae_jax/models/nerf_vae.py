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
from nerf_vae_jax.models import grid, posterior
from nerf_vae_jax.models.encoder import Encoder
from nerf_vae_jax.models.scene_function import BackgroundHead, SceneFunction


class NeRFVAE(nn.Module):
  latent: str = "global"  # "global": z [D]; "grid": z [grid_size^3 (+ 1), D], cells in the world
  latent_dim: int = 128
  grid_size: int = 8
  film_init_scale: float = 0.0
  encoder_channels: Sequence[int] = (32, 64, 128)
  encoder_cells: int = 1
  mlp_width: int = 128
  mlp_depth: int = 4
  position_frequencies: int = 8
  direction_frequencies: int = 3
  num_coarse: int = 32
  num_fine: int = 32
  scene_radius: float = 1.0
  posterior: str = "average"  # or "poe"
  dtype: Any = jnp.float32  # matmul dtype in the encoder and the MLP
  remat_chunks: int = 0  # >0: the scene function runs over this many sequential, rematerialised ray chunks
  # Grid only (ignored by the global latent, like grid_size): one more latent token, z[:, -1], inferred
  # from each view's whole feature map, that the background head reads (without it: the mean of the cells).
  background_token: bool = False
  # Grid only: the views' colours, resized to the feature map, join its channels. The encoder ends in a
  # GroupNorm, which normalises away each view's absolute colour level (a plain backdrop's colour).
  colour_features: bool = False

  @property
  def _token(self) -> bool:
    return self.background_token and self.latent == "grid"

  @property
  def latent_shape(self) -> tuple[int, ...]:
    if self.latent == "global":
      return (self.latent_dim,)
    return (self.grid_size ** 3 + int(self._token), self.latent_dim)

  def setup(self):
    if self.posterior not in posterior.COMBINE:
      raise ValueError(f"posterior must be one of {list(posterior.COMBINE)}, not {self.posterior!r}")
    grid_latent = self.latent == "grid"
    self.encoder = Encoder(channels=tuple(self.encoder_channels), cells_per_stage=self.encoder_cells,
                           num_outputs=0 if grid_latent else 2 * math.prod(self.latent_shape), dtype=self.dtype)
    if grid_latent:  # per (view, cell): lifted feature + where the cell is seen from -> Gaussian parameters
      self.cell_hidden = nn.Dense(self.encoder_channels[-1], dtype=self.dtype)
      # Zero-initialised: every posterior starts as N(0, I), as with the global head.
      self.cell_head = nn.Dense(2 * self.latent_dim, kernel_init=nn.initializers.zeros)
      if self._token:  # per view: pooled feature map -> Gaussian parameters of the token
        self.token_hidden = nn.Dense(self.encoder_channels[-1], dtype=self.dtype)
        self.token_head = nn.Dense(2 * self.latent_dim, kernel_init=nn.initializers.zeros)
    self.scene_function = scene_function_of(self, self.latent)
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
    if self.latent == "grid" and self.colour_features:
      colours = jax.image.resize(x.reshape(b * k, h, w, 3), out.shape[:3] + (3,), "linear")  # antialiased
      out = jnp.concatenate([out, colours], axis=-1)
    if self.latent == "grid":
      return self._infer_grid(out.reshape((b, k) + out.shape[1:]), intrinsics, cam_to_world, mask, h, w)
    out = out.reshape((b, k, 2) + self.latent_shape)
    return posterior.COMBINE[self.posterior](out[:, :, 0], out[:, :, 1], mask)

  def _infer_grid(self, fmaps, intrinsics, cam_to_world, mask, height: int, width: int):
    """Per-view Gaussians of every grid cell a view sees, combined over the views that see it."""
    cells = grid.cell_centres(self.grid_size, self.scene_radius)
    lift = jax.vmap(jax.vmap(grid.lift, (0, 0, 0, None, None, None)), (0, 0, 0, None, None, None))
    feats, cam_dir, depth, visible = lift(fmaps, intrinsics, cam_to_world, height, width, cells)  # [B, K, N, ...]
    # Only camera-frame quantities: what a view says about a cell depends on
    # where the cell is relative to the camera, not on world coordinates.
    where = jnp.concatenate([cam_dir, (depth / self.scene_radius)[..., None]], axis=-1)
    h = nn.swish(self.cell_hidden(jnp.concatenate([feats, where], axis=-1).astype(self.dtype)))
    out = self.cell_head(h).astype(jnp.float32)  # [B, K, N, 2D]
    seen = mask[:, :, None] & visible  # [B, K, N]
    if self._token:
      pooled = jnp.mean(fmaps, axis=(2, 3)).astype(self.dtype)  # [B, K, C]
      token = self.token_head(nn.swish(self.token_hidden(pooled))).astype(jnp.float32)
      out = jnp.concatenate([out, token[:, :, None]], axis=2)  # [B, K, N + 1, 2D]
      seen = jnp.concatenate([seen, mask[:, :, None]], axis=2)  # every real view sees the whole scene
    mu, raw = jnp.split(out, 2, axis=-1)
    return posterior.COMBINE[self.posterior](mu, raw, seen)

  def render_rays(self, latent, origins, directions, key, randomized: bool = True):
    """Coarse and fine volume renders of rays [B, R, 3] given latents [B, ...].

    See ``rendering.render_coarse_fine``: {"coarse": ..., "fine": ...}, each
    a dict of rgb [B, R, 3], depth, acc [B, R] and weights [B, R, S].
    """
    return rendering.render_coarse_fine(
        self._field(latent[:, :-1] if self._token else latent),
        self.background_colour(latent)[:, None, :], origins,
        directions, key, num_coarse=self.num_coarse, num_fine=self.num_fine, scene_radius=self.scene_radius,
        randomized=randomized)

  def background_colour(self, latent):
    """The colour [B, 3] behind the scene (what rays that hit nothing show) of latents [B, ...]."""
    return self.background(latent[:, -1] if self._token else latent)

  def _field(self, latent):
    """(points [B, R, S, 3], directions [B, R, 3]) -> (density, rgb) of the scene function given ``latent``.

    With ``remat_chunks`` C > 0, the rays run in C sequential chunks
    (``nn.scan``, parameters shared), each rematerialised (``nn.remat``,
    JAX's default policy: nothing inside is saved). The scene function's
    activations, [scenes x rays x samples, width] per layer, are most of a
    training step's memory; the backward pass then recomputes one chunk's at
    a time from its inputs, at the cost of one more forward pass of the MLP.
    (Remat of the whole function as one block would not lower the peak: its
    backward pass needs all of its activations at once.) The parameters are
    the same with and without it, so checkpoints are interchangeable.
    """
    if not self.remat_chunks:
      return lambda x, d: self.scene_function(x, d, latent)
    c = self.remat_chunks

    def field(x, d):
      b, r, s, _ = x.shape
      if r % c:
        raise errors.ConfigError(f"config.model.remat_chunks={c} does not divide the {r} rays per scene of this "
                                 f"pass; choose a divisor of config.loss.num_rays and config.eval.chunk.")
      split = lambda a: jnp.swapaxes(a.reshape((b, c, r // c) + a.shape[2:]), 0, 1)  # [C, B, R/C, ...]
      body = nn.remat(lambda mdl, z, xd: (z, mdl(xd[0], xd[1], z)))
      scan = nn.scan(body, variable_broadcast="params", split_rngs={"params": False})
      _, out = scan(self.scene_function, latent, (split(x), split(d)))
      return jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1).reshape((b, r) + a.shape[3:]), out)

    return field

  def __call__(self, context, origins, directions, key):
    mean, _ = self.infer(context)
    return self.render_rays(mean, origins, directions, key)


def scene_function_of(m: NeRFVAE, conditioning: str) -> SceneFunction:
  """The scene function of a NeRF-VAE's settings (``conditioning="none"``: the per-scene NeRF's)."""
  return SceneFunction(
      width=m.mlp_width, depth=m.mlp_depth, position_frequencies=m.position_frequencies,
      direction_frequencies=m.direction_frequencies, conditioning=conditioning, grid_size=m.grid_size,
      film_init_scale=m.film_init_scale, scene_radius=m.scene_radius, dtype=m.dtype)


def from_config(config, scene_radius: float) -> NeRFVAE:
  """The model of an ml-collections ``config.model``."""
  choices = {"latent": ("global", "grid"), "posterior": tuple(posterior.COMBINE), "dtype": ("float32", "bfloat16")}
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


def gaussian_log_likelihood(x, mean, scale: float):
  """log N(x; mean, scale^2) of each colour channel: [..., 3] -> [..., 3]."""
  return -0.5 * jnp.square((x - mean) / scale) - math.log(scale) - 0.5 * math.log(2 * math.pi)


def ray_log_likelihood(model: NeRFVAE, params, latent, rays: Rays, key, *, likelihood_scale: float,
                       randomized: bool = True):
  """log p(pixels | latent) of whole images, estimated from ``rays``.

  The Gaussian log-likelihood of each ray's colour under the rendered colour,
  summed over channels, weighted by the ray's importance weight and summed
  over rays: an unbiased estimate of the log-likelihood of every real pixel
  of the views the rays were drawn from.

  Returns:
    ({"fine": [B], "coarse": [B]} log-likelihoods in nats, the render of
    ``NeRFVAE.render_rays``).
  """
  out = model.apply(params, latent, rays.origins, rays.directions, key, randomized, method=NeRFVAE.render_rays)
  ll = {p: jnp.sum(jnp.sum(gaussian_log_likelihood(rays.colours, out[p]["rgb"], likelihood_scale), -1)
                   * rays.weights, axis=1) for p in ("fine", "coarse")}
  return ll, out


def weighted_mse(rays: Rays, rgb):
  """The estimate of the mean squared error over every real pixel [B] (colours in [0, 1])."""
  return jnp.sum(jnp.mean(jnp.square(rgb - rays.colours), -1) * rays.weights, axis=1) / rays.pixels


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


def elbo_loss(model: NeRFVAE, params, batch, key, *, num_rays: int, likelihood_scale: float, beta=1.0,
              free_bits: float = 0.0, coarse_weight: float = 0.1, targets: str = "held_out",
              object_fraction: float = 0.0):
  """The training loss and its metrics.

  The ELBO per scene is the log-likelihood of the whole target images
  (``ray_log_likelihood`` of R rays from ``training_rays``) minus
  KL(q(z | context) || N(0, I)). The loss is -(LL - beta * max(KL, free_bits)
  + coarse_weight * LL_coarse) / P per scene, averaged over scenes, where P
  is the number of pixels the likelihood covers (it keeps the numbers
  readable). LL_coarse trains the coarse pass, as in NeRF.

  Returns:
    (loss, metrics): metrics hold per-pixel ELBO, log-likelihood and KL (in
    nats), the KL per scene, the fine pass's MSE and PSNR (estimates over
    whole images), and beta.
  """
  k_z, k_rays, k_render = jax.random.split(key, 3)
  mean, scale = infer(model, params, batch)
  z = sample_latent(k_z, mean, scale)
  rays = training_rays(batch, k_rays, num_rays, targets=targets, object_fraction=object_fraction)
  ll, out = ray_log_likelihood(model, params, z, rays, k_render, likelihood_scale=likelihood_scale)
  per_pixel = lambda x: jnp.mean(x / rays.pixels)
  kl = posterior.kl_to_standard_normal(mean, scale)
  objective = ll["fine"] - beta * jnp.maximum(kl, free_bits) + coarse_weight * ll["coarse"]
  mse = jnp.mean(weighted_mse(rays, out["fine"]["rgb"]))
  metrics = {
      "loss": -per_pixel(objective), "elbo_per_pixel": per_pixel(ll["fine"] - kl),
      "ll_per_pixel": per_pixel(ll["fine"]), "kl_per_pixel": per_pixel(kl), "kl": jnp.mean(kl),
      "mse": mse, "psnr": metrics_lib.psnr(mse, jnp), "mse_coarse": jnp.mean(weighted_mse(rays, out["coarse"]["rgb"])),
      "beta": jnp.asarray(beta, jnp.float32),
  }
  return metrics["loss"], metrics


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
