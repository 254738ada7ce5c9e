"""NeRF-VAE: encode context views, average their posteriors, sample a latent,
march rays through the latent-conditioned scene function, composite.

``NeRFVAE`` is a Flax Linen module whose methods are used through
``model.apply(params, ..., method=...)``:

* ``infer(context)`` -> ``posterior.Posterior``; ``context`` is a batch (or
  its context part, ``batch.context``), see ``nerf_vae_jax/batching.py``
* ``render_rays(latent, origins, directions, key, randomized)`` -> coarse and fine renders
* ``prior_density()`` -> the factor prior (``models/priors.py``)
* ``__call__`` (for ``init``): all of them.

The functions below build on it: the latent's distributions
(``sample_posterior``, ``sample_prior``; deterministic renders use the posterior's mean) and rendering
whole cameras (``render_views``). The objectives are in ``objectives.py``,
the rays they are estimated from in ``ray_sampling.py``.
Shapes: B scenes, K context views, T target views, R rays, S samples per ray.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from nerf_vae_jax import errors, geometry, rendering
from nerf_vae_jax.models import fitted_prior, grid, posterior, priors, scene_function
from nerf_vae_jax.models.encoder import Encoder
from nerf_vae_jax.models.scene_function import BackgroundHead


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
  # Grid only: "independent" (N(0, I) on every cell, the reference) or "factor" (one Gaussian over the whole
  # latent with prior_rank shared factors, models/priors.py).
  prior: str = "independent"
  prior_rank: int = 128
  # Grid, average only: each view also predicts a depth per pixel, and vouches for a cell in proportion to
  # how far the cell lies in front of that depth (``depth_weight``); what no view vouches for follows the
  # prior. Off: a view vouches for every cell it projects into, hidden or not (RESULTS.md, "How far are
  # samples from scenes?": from one view, cells far behind an object were nearly as certain as its surface).
  depth_lift: bool = False

  @property
  def _token(self) -> bool:
    return self.background_token and self.latent == "grid"

  @property
  def prior_in_use(self) -> str:
    """``prior`` with the grid latent; the global latent's prior is always "independent" (N(0, I))."""
    return self.prior if self.latent == "grid" else "independent"

  @property
  def factor(self) -> bool:
    return self.prior_in_use == "factor"

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
      if self.depth_lift:
        if self.posterior != "average" or self.background_token:
          raise errors.ConfigError("config.model.depth_lift needs model.posterior=average and no background_token.")
        # Starts at the far side of the scene's sphere (softplus(1.8546) = 2 radii past its near side): every
        # cell vouched for (weight >= 0.993), as without the lift, yet not so far that no gradient reaches it.
        self.depth_head = nn.Dense(1, kernel_init=nn.initializers.zeros, bias_init=nn.initializers.constant(DEPTH_INIT))
      if self._token:  # per view: pooled feature map -> Gaussian parameters of the token
        self.token_hidden = nn.Dense(self.encoder_channels[-1], dtype=self.dtype)
        self.token_head = nn.Dense(2 * self.latent_dim, kernel_init=nn.initializers.zeros)
    if self.factor:
      if self.prior_rank < 1:
        raise errors.ConfigError(f"config.model.prior_rank={self.prior_rank}: the factor prior needs at least one "
                                 f"factor; choose e.g. 128.")
      self.latent_prior = priors.FactorPrior(math.prod(self.latent_shape), self.prior_rank)
    self.scene_function = scene_function.of_settings(self, conditioning=self.latent,
                                                     scene_radius=self.scene_radius, dtype=self.dtype)
    self.background = BackgroundHead()

  def infer(self, context: dict):
    """The posterior over the scene latent from K context views.

    Args:
      context: a dict with context_images uint8 [B, K, H, W, 3],
        context_intrinsics [B, K, 4], context_cam_to_world [B, K, 4, 4] and
        context_mask bool [B, K] (which views are real); other keys are ignored.

    Returns:
      ``posterior.Posterior``: mean and scale [B, *latent_shape].
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
    out = out.reshape((b, k, 2, self.latent_dim))
    return posterior.Posterior(*posterior.COMBINE[self.posterior](out[:, :, 0], out[:, :, 1], mask))

  def _depth_weighted(self, surface_raw, cam_to_world, out, depth, seen):
    """``_infer_grid`` with ``depth_lift``: the views' Gaussians of a cell averaged with weights w [B, K, N]
    (``depth_weight`` of the cell's depth against the view's predicted surface, whose raw value at the cell is
    ``surface_raw`` [B, K, N]), and the cells' share of the views, min(sum of w, 1), blended with the prior."""
    # The surface's depth past the near side of the scene's sphere: d = |o| - R + R softplus(raw).
    near = jnp.linalg.norm(cam_to_world[..., :3, 3], axis=-1) - self.scene_radius  # [B, K]
    surface = near[..., None] + self.scene_radius * jax.nn.softplus(surface_raw)
    w = seen * depth_weight(depth, surface, self.scene_radius)  # [B, K, N]
    total = jnp.sum(w, axis=1)  # [B, N]
    mu, raw_scale = jnp.split(out, 2, axis=-1)
    mean, scale = posterior.average(mu, raw_scale, w / jnp.maximum(total, 1e-6)[:, None])  # before the blend
    share = jnp.minimum(total, 1.0)[..., None]
    prior_mean, prior_scale = self._prior_marginal()
    return posterior.Posterior(blend(share, mean, prior_mean), blend(share, scale, prior_scale))

  def _infer_grid(self, fmaps, intrinsics, cam_to_world, mask, height: int, width: int):
    """Per-view Gaussians of every grid cell a view sees, combined over the views that see it."""
    cells = grid.cell_centres(self.grid_size, self.scene_radius)
    lift = jax.vmap(jax.vmap(grid.lift, (0, 0, 0, None, None, None)), (0, 0, 0, None, None, None))
    maps = fmaps
    if self.depth_lift:  # the predicted surface rides along as one more channel, read at each cell by the same lift
      maps = jnp.concatenate([fmaps, self.depth_head(fmaps.astype(jnp.float32)).astype(fmaps.dtype)], axis=-1)
    feats, cam_dir, depth, visible = lift(maps, intrinsics, cam_to_world, height, width, cells)  # [B, K, N, ...]
    if self.depth_lift:
      feats, surface_raw = feats[..., :-1], feats[..., -1]
    # Only camera-frame quantities: what a view says about a cell depends on
    # where the cell is relative to the camera, not on world coordinates.
    where = jnp.concatenate([cam_dir, (depth / self.scene_radius)[..., None]], axis=-1)
    h = nn.swish(self.cell_hidden(jnp.concatenate([feats, where], axis=-1).astype(self.dtype)))
    out = self.cell_head(h).astype(jnp.float32)  # [B, K, N, 2D]
    seen = mask[:, :, None] & visible  # [B, K, N]
    if self.depth_lift:
      return self._depth_weighted(surface_raw, cam_to_world, out, depth, seen)
    if self._token:
      pooled = jnp.mean(fmaps, axis=(2, 3)).astype(self.dtype)  # [B, K, C]
      token = self.token_head(nn.swish(self.token_hidden(pooled))).astype(jnp.float32)
      out = jnp.concatenate([out, token[:, :, None]], axis=2)  # [B, K, N + 1, 2D]
      seen = jnp.concatenate([seen, mask[:, :, None]], axis=2)  # every real view sees the whole scene
    mu, raw = jnp.split(out, 2, axis=-1)
    mean, scale = posterior.COMBINE[self.posterior](mu, raw, seen)
    if not self.factor:
      return posterior.Posterior(mean, scale)
    # A cell no view sees: the prior's marginal there (the combinations give it N(0, I)).
    seen_any = jnp.any(seen, axis=1)[..., None]
    prior_mean, prior_scale = self._prior_marginal()
    return posterior.Posterior(blend(seen_any, mean, prior_mean), blend(seen_any, scale, prior_scale))

  def _prior_marginal(self):
    """Each latent number's prior (mean, scale) [*latent_shape] alone, what a cell no view sees falls back on:
    N(0, 1), or the factor prior's marginal (held fixed there: the prior learns from the KL, not from this)."""
    if not self.factor:
      return 0.0, 1.0
    p = jax.lax.stop_gradient(self.latent_prior())
    return p.mean.reshape(self.latent_shape), fitted_prior.marginal_scale(p).reshape(self.latent_shape)

  def prior_density(self):
    """The factor prior (``fitted_prior.FittedPrior`` over the flattened latent)."""
    return self.latent_prior()

  def render_rays(self, latent, origins, directions, key, randomized: bool = True, density_noise: float = 0.0):
    """Coarse and fine volume renders of rays [B, R, 3] given latents [B, ...].

    See ``rendering.render_coarse_fine``: {"coarse": ..., "fine": ...}, each
    a dict of rgb [B, R, 3], depth, acc [B, R] and weights [B, R, S].
    ``density_noise``: the training regulariser's std (``config.loss.density_noise``).
    """
    return rendering.render_coarse_fine(
        self._field(latent[:, :-1] if self._token else latent),
        self.background_colour(latent)[:, None, :], origins,
        directions, key, num_coarse=self.num_coarse, num_fine=self.num_fine, scene_radius=self.scene_radius,
        randomized=randomized, density_noise=density_noise)

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
      return lambda x, d, noise: self.scene_function(x, d, latent, noise)
    c = self.remat_chunks

    def field(x, d, noise):
      b, r, s, _ = x.shape
      if r % c:
        raise errors.ConfigError(f"config.model.remat_chunks={c} does not divide the {r} rays per scene of this "
                                 f"pass; choose a divisor of config.loss.num_rays and config.eval.chunk.")
      split = lambda a: jnp.swapaxes(a.reshape((b, c, r // c) + a.shape[2:]), 0, 1)  # [C, B, R/C, ...]
      body = nn.remat(lambda mdl, z, xdn: (z, mdl(xdn[0], xdn[1], z, xdn[2])))
      scan = nn.scan(body, variable_broadcast="params", split_rngs={"params": False})
      _, out = scan(self.scene_function, latent, (split(x), split(d), None if noise is None else split(noise)))
      return jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1).reshape((b, r) + a.shape[3:]), out)

    return field

  def __call__(self, context, origins, directions, key):
    q = self.infer(context)
    if self.factor:  # creates the prior's parameters
      self.latent_prior()
    return self.render_rays(q.mean, origins, directions, key)


# Study options that lost, as saved runs may still hold them: field -> (whether a value can no longer be rebuilt,
# where RESULTS.md tells what it did, the last commit with it).
RETIRED = {
    "cells_from_views": (lambda v: v is not True, '"Can z0 carry the scene?"', "bd63e9c"),
    # The hierarchical prior: every figure went to the factor prior.
    "prior": (lambda v: v == "hierarchical", '"A low-rank Gaussian as the model\'s own prior"', "bceea4f"),
}
# Fields that only retired options read: dropped from saved runs whatever their value.
REMOVED_FIELDS = ("cells_from_views", "top_dim", "prior_channels", "prior_net", "top_down")


def from_config(config, scene_radius: float) -> NeRFVAE:
  """The model of an ml-collections ``config.model``."""
  for field, (gone, where, commit) in RETIRED.items():  # runs saved while a study option existed
    if field in config and gone(config[field]):
      raise errors.ConfigError(f"config.model.{field}={config[field]!r}: a study option removed since (RESULTS.md, "
                               f"{where}); check out commit {commit} or earlier to load this run.")
  choices = {"latent": ("global", "grid"), "posterior": tuple(posterior.COMBINE), "prior": ("independent", "factor")}
  for field, allowed in choices.items():
    value = config.get(field, getattr(NeRFVAE, field, None))  # runs saved before a field existed: its default
    if value not in allowed:
      raise errors.ConfigError(f"config.model.{field}={value!r}; choose one of {', '.join(allowed)}.")
  dtype = scene_function.dtype_of(config.dtype)
  fields = {k: v for k, v in config.items() if k != "dtype" and k not in REMOVED_FIELDS}
  fields["encoder_channels"] = tuple(fields["encoder_channels"])
  return NeRFVAE(scene_radius=scene_radius, dtype=dtype, **fields)


DEPTH_INIT = 1.8546  # log(e^2 - 1): the depth head's bias at initialisation
DEPTH_MARGIN = 0.5  # scene radii past the predicted surface that a view still vouches for (objects' depth)
DEPTH_SOFTNESS = 0.1  # scene radii over which its weight falls from 1 to 0


def depth_weight(depth, surface, scene_radius: float):
  """How much a view vouches for cells at ``depth`` along its axis, given the surface it predicts there: 1 in
  front of the surface and through an object's depth (``DEPTH_MARGIN``), falling to 0 behind it."""
  return jax.nn.sigmoid((surface + DEPTH_MARGIN * scene_radius - depth) / (DEPTH_SOFTNESS * scene_radius))


def blend(seen, views, prior):
  """The cells' Gaussian parameter: the views' where they see (bool ``seen``), or mixed by their share."""
  if seen.dtype == jnp.bool_:
    return jnp.where(seen, views, prior)
  return seen * views + (1.0 - seen) * prior


def infer(model: NeRFVAE, params, context: dict) -> posterior.Posterior:
  """The posterior q(z | views) of a batch's context views (``NeRFVAE.infer``)."""
  return model.apply(params, context, method=NeRFVAE.infer)


def sample_latent(key, mean, scale):
  """A reparameterised sample mean + scale * eps."""
  return mean + scale * jax.random.normal(key, mean.shape)


def prior_density(model: NeRFVAE, params) -> fitted_prior.FittedPrior:
  """The factor prior N(mean, F F^T + diag(d)) over the flattened latent (``model.prior="factor"`` only)."""
  return model.apply(params, method=NeRFVAE.prior_density)


def log_prior(model: NeRFVAE, params, z):
  """log p(z) [B] of latents z [B, *latent_shape]: log N(z; 0, I), or the factor prior's."""
  if model.factor:
    return fitted_prior.log_prob(prior_density(model, params), z)
  return posterior.log_normal(z, jnp.zeros_like(z), jnp.ones_like(z))


class LatentSample(NamedTuple):
  """One draw from the posterior (``sample_posterior``), each field [B, ...]."""
  z: jax.Array  # [B, *latent_shape]
  kl: jax.Array  # KL(q || p), in closed form
  log_ratio: jax.Array  # log p(z) - log q(z | views): the IWAE bound's weights
  weighted_kl: jax.Array  # beta * kl in value; its gradient: see ``sample_posterior``
  log_q: jax.Array  # log q(z | views)


def sample_posterior(model: NeRFVAE, params, q: posterior.Posterior, key, beta=1.0,
                     balance: bool = True) -> LatentSample:
  """One reparameterised latent z ~ q(z | views), its KL term (in closed form) and its log importance ratio.

  ``weighted_kl`` is what training subtracts: beta x KL, but the learned
  (factor) prior takes the gradient of the whole KL, unweighted. While beta
  warms up from 0, the encoder's posterior is free to move, but the prior
  follows it at the full rate instead of learning nothing (a learned prior
  trained at beta ~ 0 stayed blind to the scenes; RESULTS.md, "Can the model
  sample scenes?"). At beta = 1 the gradient is the ELBO's. ``balance=False``:
  beta x KL, all of it.
  """
  z = sample_latent(key, q.mean, q.scale)
  log_q = posterior.log_normal(z, q.mean, q.scale)
  if not model.factor:
    kl = posterior.kl_to_standard_normal(q.mean, q.scale)
    return LatentSample(z, kl, log_prior(model, params, z) - log_q, beta * kl, log_q)
  p = prior_density(model, params)
  w = fitted_prior.woodbury(p)  # once for the KL's sides and the ratio: the step's largest prior cost
  kl = fitted_prior.kl_from_diagonal(p, q.mean, q.scale, w)
  log_ratio = fitted_prior.log_prob(p, z, w) - log_q
  kl_of = lambda qq, pp: fitted_prior.kl_from_diagonal(pp[0], *qq, pp[1])
  weighted = balanced_kl(kl_of, (q.mean, q.scale), (p, w), beta) if balance else beta * kl
  return LatentSample(z, kl, log_ratio, weighted, log_q)


def balanced_kl(kl_of, q, p, beta):
  """beta x KL(q || p) in value, whose gradient is beta x the KL's through the posterior's parameters ``q`` but
  1 x through the learned prior's ``p`` (``sample_posterior``); ``kl_of(q, p)`` computes the KL [B]."""
  sg = jax.lax.stop_gradient
  prior_side = kl_of(jax.tree.map(sg, q), p)
  return beta * kl_of(q, jax.tree.map(sg, p)) + prior_side - sg(prior_side)


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


def sample_prior(model: NeRFVAE, params, key, num: int, temperature: float = 1.0):
  """Latents [num, *latent_shape] from the model's prior, reproducible from ``key``.

  ``temperature`` scales the noise (1: the prior itself; below 1: samples
  nearer the mode, as NVAE shows them).
  """
  if model.factor:
    return fitted_prior.sample(prior_density(model, params), key, num, temperature).reshape((num,) + model.latent_shape)
  return temperature * jax.random.normal(key, (num,) + model.latent_shape)


def independent_cells(model: NeRFVAE, key, num: int):
  """Latents [num, *latent_shape] whose cells are independent N(0, I), as the independent prior draws them (the
  sample metrics' reference)."""
  return jax.random.normal(key, (num,) + model.latent_shape)

