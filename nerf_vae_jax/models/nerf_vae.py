"""NeRF-VAE: encode context views, average their posteriors, sample a latent,
march rays through the latent-conditioned scene function, composite.

``NeRFVAE`` is a Flax Linen module whose methods are used through
``model.apply(params, ..., method=...)``:

* ``infer(context)`` -> ``posterior.Posterior``; ``context`` is a batch (or
  its context part, ``batch.context``), see ``nerf_vae_jax/batching.py``
* ``render_rays(latent, origins, directions, key, randomized)`` -> coarse and fine renders
* ``cell_prior(z0)`` -> p(cells | z0) of the hierarchical prior (``models/priors.py``)
* ``__call__`` (for ``init``): all of them.

The functions below build on it: the latent's distributions
(``sample_posterior``, ``posterior_latent``, ``sample_prior``) and rendering
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
from nerf_vae_jax.models import fitted_prior, grid, posterior, scene_function
from nerf_vae_jax.models import priors
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
  # Grid only: "independent" (N(0, I) on every cell, the reference), "hierarchical" (a scene-level z0 and
  # p(cells | z0), models/priors.py), with z0's size and the prior networks' channels, or "factor" (one
  # Gaussian over the whole latent with prior_rank shared factors, models/priors.py).
  prior: str = "independent"
  prior_rank: int = 128
  top_dim: int = 32
  prior_channels: int = 32
  prior_net: str = "pyramid"  # or "per_cell" or "slots" (models/priors.py)
  top_down: int = 0  # hierarchical: deterministic features of z0 per cell that the scene function reads too
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
  def hierarchical(self) -> bool:
    return self.prior_in_use == "hierarchical"

  @property
  def factor(self) -> bool:
    return self.prior_in_use == "factor"

  @property
  def latent_shape(self) -> tuple[int, ...]:
    if self.latent == "global":
      return (self.latent_dim,)
    return (self.grid_size ** 3 + int(self._token), self.latent_dim + (self.top_down if self.hierarchical else 0))

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
    if self.hierarchical:
      if self.background_token:
        raise errors.ConfigError("config.model.background_token needs model.prior=independent (the token has no "
                                 "place in p(cells | z0)); turn one of them off.")
      priors.check_grid_size(self.grid_size)
      if self.prior_net == "slots":
        priors.slot_split(self.top_dim)  # a z0 too small for the slots fails here, naming the fix
      self.top_encoder = priors.TopEncoder(self.top_dim, self.prior_channels, self.grid_size, self.prior_net)
      self.cell_prior_net = priors.CellPrior(self.latent_dim, self.prior_channels, self.grid_size, self.prior_net,
                                                self.top_down)
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
      ``posterior.Posterior``: mean and scale [B, *latent_shape]; with the
      hierarchical prior also q(z0) and the cells the views see.
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

  def _depth_weighted(self, surface_raw, cam_to_world, out, h, depth, seen):
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
    share = jnp.minimum(total, 1.0)
    if not self.hierarchical:  # blended with the prior here; the hierarchical prior blends in _cells_given_top
      prior_mean, prior_scale = self._prior_marginal()
      return posterior.Posterior(blend(share[..., None], mean, prior_mean), blend(share[..., None], scale, prior_scale))
    feats = posterior.masked_mean(h.astype(jnp.float32), seen)
    seen_any = jnp.any(seen, axis=1)
    top_mean, top_raw = self.top_encoder(feats, seen_any)
    return posterior.Posterior(mean, scale, top_mean, posterior.to_scale(top_raw), share)

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
      return self._depth_weighted(surface_raw, cam_to_world, out, h, depth, seen)
    if self._token:
      pooled = jnp.mean(fmaps, axis=(2, 3)).astype(self.dtype)  # [B, K, C]
      token = self.token_head(nn.swish(self.token_hidden(pooled))).astype(jnp.float32)
      out = jnp.concatenate([out, token[:, :, None]], axis=2)  # [B, K, N + 1, 2D]
      seen = jnp.concatenate([seen, mask[:, :, None]], axis=2)  # every real view sees the whole scene
    mu, raw = jnp.split(out, 2, axis=-1)
    if self.factor:  # a cell no view sees: the prior's marginal there (the combinations give it N(0, I))
      mean, scale = posterior.COMBINE[self.posterior](mu, raw, seen)
      seen_any = jnp.any(seen, axis=1)[..., None]
      prior_mean, prior_scale = self._prior_marginal()
      return posterior.Posterior(blend(seen_any, mean, prior_mean), blend(seen_any, scale, prior_scale))
    if not self.hierarchical:
      return posterior.Posterior(*posterior.COMBINE[self.posterior](mu, raw, seen))
    # The views' part of q(cells | views, z0): their average, or (poe) their product, which
    # ``_cells_given_top`` multiplies by p(cells | z0) once z0 is drawn.
    combine = posterior.views_product if self.posterior == "poe" else posterior.average
    mean, scale = combine(mu, raw, seen)
    # q(z0): from the views' hidden cell features, averaged over the views that see each cell.
    feats = posterior.masked_mean(h.astype(jnp.float32), seen)  # [B, N, C]
    seen_any = jnp.any(seen, axis=1)  # [B, N]
    top_mean, top_raw = self.top_encoder(feats, seen_any)
    return posterior.Posterior(mean, scale, top_mean, posterior.to_scale(top_raw), seen_any)

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

  def cell_prior(self, top):
    """p(cells | z0) of the hierarchical prior: (mean, scale) [B, G^3, D] of z0 [B, top_dim], and the
    top-down features [B, G^3, top_down] (None if ``top_down`` is 0)."""
    mean, raw, context = self.cell_prior_net(top)
    return mean, posterior.to_scale(raw), context

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
    z = q.mean
    if self.hierarchical:  # creates the prior's parameters
      prior_mean, _, top_down = self.cell_prior(q.top_mean)
      z = with_top_down(blend(q.seen[..., None], z, prior_mean), top_down)
    if self.factor:  # creates the prior's parameters
      self.latent_prior()
    return self.render_rays(z, origins, directions, key)


# Study options that lost, removed at RETIRED_AT: their defaults, and where RESULTS.md tells what they did.
RETIRED = {"cells_from_views": (True, '"Can z0 carry the scene?"')}
RETIRED_AT = "bd63e9c"


def from_config(config, scene_radius: float) -> NeRFVAE:
  """The model of an ml-collections ``config.model``."""
  choices = {"latent": ("global", "grid"), "posterior": tuple(posterior.COMBINE),
             "prior": ("independent", "hierarchical", "factor"), "prior_net": priors.NETS}
  for field, allowed in choices.items():
    value = config.get(field, getattr(NeRFVAE, field, None))  # runs saved before a field existed: its default
    if value not in allowed:
      raise errors.ConfigError(f"config.model.{field}={value!r}; choose one of {', '.join(allowed)}.")
  dtype = scene_function.dtype_of(config.dtype)
  fields = {k: v for k, v in config.items() if k != "dtype"}
  for field, (default, where) in RETIRED.items():  # runs saved while a study option existed
    if fields.pop(field, default) != default:
      raise errors.ConfigError(f"config.model.{field}={config[field]!r}: a study option removed since (RESULTS.md, "
                               f"{where}); check out commit {RETIRED_AT} or earlier to load this run.")
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


def cell_prior(model: NeRFVAE, params, top):
  """p(cells | z0): (mean, scale) [B, G^3, D] of z0 [B, top_dim] (hierarchical prior only)."""
  return model.apply(params, top, method=NeRFVAE.cell_prior)[:2]


def with_top_down(cells, top_down):
  """The latent the scene function reads: the cells [B, G^3, D], and the top-down features if any."""
  return cells if top_down is None else jnp.concatenate([cells, top_down], axis=-1)


def _cells_given_top(model: NeRFVAE, params, q: posterior.Posterior, top):
  """q(cells | views, z0) and p(cells | z0).

  ``posterior="average"``: the views' average where they see, p(cells | z0)
  elsewhere; ``"poe"``: the product of p(cells | z0) and the views' Gaussians
  (p(cells | z0) alone where no view sees).
  """
  prior_mean, prior_scale, top_down = model.apply(params, top, method=NeRFVAE.cell_prior)
  seen = q.seen[..., None]
  if model.posterior == "poe":
    mean, scale = posterior.product_with(q.mean, q.scale, prior_mean, prior_scale)
  else:
    mean, scale = q.mean, q.scale
  return (blend(seen, mean, prior_mean), blend(seen, scale, prior_scale)), (prior_mean, prior_scale), top_down


def prior_density(model: NeRFVAE, params) -> fitted_prior.FittedPrior:
  """The factor prior N(mean, F F^T + diag(d)) over the flattened latent (``model.prior="factor"`` only)."""
  return model.apply(params, method=NeRFVAE.prior_density)


def log_prior(model: NeRFVAE, params, z, top=None, cells_given_top=None):
  """log p(z) [B] of latents z [B, *latent_shape]: log N(z; 0, I), the factor prior's, or with the hierarchical
  prior log N(z0; 0, I) + log p(cells | z0) of z0 = ``top`` [B, top_dim] (``cells_given_top``: p(cells | z0)'s
  (mean, scale) if already computed; top-down features, a function of z0, carry no density of their own)."""
  if model.factor:
    return fitted_prior.log_prob(prior_density(model, params), z)
  if not model.hierarchical:
    return posterior.log_normal(z, jnp.zeros_like(z), jnp.ones_like(z))
  mean, scale = cell_prior(model, params, top) if cells_given_top is None else cells_given_top
  cells = z[..., :model.latent_dim]
  return posterior.log_normal(top, jnp.zeros_like(top), jnp.ones_like(top)) + posterior.log_normal(cells, mean, scale)


class LatentSample(NamedTuple):
  """One draw from the posterior (``sample_posterior``), each field [B, ...]."""
  z: jax.Array  # [B, *latent_shape]
  kl: jax.Array  # KL(q || p) (hierarchical: at the sampled z0)
  log_ratio: jax.Array  # log p(z) - log q(z | views), z0 included: the IWAE bound's weights
  weighted_kl: jax.Array  # beta * kl in value; its gradient: see ``sample_posterior``
  log_q: jax.Array  # log q(z | views), z0 included (hierarchical: log q(z0) + log q(cells | views, z0))
  log_top_prior: jax.Array  # log N(z0; 0, I) (0 without z0): the weights under another cell prior need it
  top: jax.Array  # the z0 drawn, [B, top_dim] ([B, 0] without z0)


def sample_posterior(model: NeRFVAE, params, q: posterior.Posterior, key, beta=1.0,
                     balance: bool = True) -> LatentSample:
  """One reparameterised latent z ~ q(z | views), its KL term and its log importance ratio.

  The KL is in closed form with the independent and the factor prior; with the hierarchical
  one it is KL(q(z0) || N(0, I)) + KL(q(cells | z0) || p(cells | z0)) at the
  sampled z0, an unbiased estimate.

  ``weighted_kl`` is what training subtracts: beta x KL, but the learned
  prior p(cells | z0) (and z0's path into it) takes the gradient of the
  whole KL, unweighted. While beta warms up from 0, the encoder's posterior
  is free to move, but the prior follows it at the full rate instead of
  learning nothing (a p(cells | z0) trained at beta ~ 0 stayed blind to z0,
  and q(z0) collapsed onto N(0, I); RESULTS.md, "Can the model sample scenes?"). At
  beta = 1 the gradient is the ELBO's. The factor prior learns the same way. ``balance=False``: beta x KL,
  all of it.
  """
  if model.factor:
    z = sample_latent(key, q.mean, q.scale)
    log_q = posterior.log_normal(z, q.mean, q.scale)
    p = prior_density(model, params)
    w = fitted_prior.woodbury(p)  # once for the KL's sides and the ratio: the step's largest prior cost
    kl = fitted_prior.kl_from_diagonal(p, q.mean, q.scale, w)
    log_ratio = fitted_prior.log_prob(p, z, w) - log_q
    kl_of = lambda qq, pp: fitted_prior.kl_from_diagonal(pp[0], *qq, pp[1])
    weighted = balanced_kl(kl_of, (q.mean, q.scale), (p, w), beta) if balance else beta * kl
    empty = jnp.zeros(z.shape[:1] + (0,), z.dtype)
    return LatentSample(z, kl, log_ratio, weighted, log_q, jnp.zeros_like(log_q), empty)
  if not q.hierarchical:
    z = sample_latent(key, q.mean, q.scale)
    log_q = posterior.log_normal(z, q.mean, q.scale)
    kl = posterior.kl_to_standard_normal(q.mean, q.scale)
    return LatentSample(z, kl, log_prior(model, params, z) - log_q, beta * kl, log_q, jnp.zeros_like(log_q),
                        jnp.zeros(z.shape[:1] + (0,), z.dtype))
  k_top, k_cells = jax.random.split(key)
  top = sample_latent(k_top, q.top_mean, q.top_scale)
  (mean, scale), (prior_mean, prior_scale), top_down = _cells_given_top(model, params, q, top)
  z = sample_latent(k_cells, mean, scale)
  # Cells no view sees have q = p: their terms cancel.
  log_q = posterior.log_normal(top, q.top_mean, q.top_scale) + posterior.log_normal(z, mean, scale)
  log_top_prior = posterior.log_normal(top, jnp.zeros_like(top), jnp.ones_like(top))
  _log_ratio = lambda: log_prior(model, params, z, top, (prior_mean, prior_scale)) - log_q
  kl_top = posterior.kl_to_standard_normal(q.top_mean, q.top_scale)
  kl_cells = posterior.kl_normal(mean, scale, prior_mean, prior_scale)
  kl_of = lambda qq, pp: posterior.kl_normal(*qq, *pp)
  cells_term = balanced_kl(kl_of, (mean, scale), (prior_mean, prior_scale), beta) if balance else beta * kl_cells
  return LatentSample(with_top_down(z, top_down), kl_top + kl_cells, _log_ratio(), beta * kl_top + cells_term,
                      log_q, log_top_prior, top)


def balanced_kl(kl_of, q, p, beta):
  """beta x KL(q || p) in value, whose gradient is beta x the KL's through the posterior's parameters ``q`` but
  1 x through the learned prior's ``p`` (``sample_posterior``); ``kl_of(q, p)`` computes the KL [B]."""
  sg = jax.lax.stop_gradient
  prior_side = kl_of(jax.tree.map(sg, q), p)
  return beta * kl_of(q, jax.tree.map(sg, p)) + prior_side - sg(prior_side)


def cells_posterior(model: NeRFVAE, params, q: posterior.Posterior, key):
  """The Gaussian (mean, scale) [B, *latent_shape] of the latent a posterior sample draws its cells from: q's
  own, or with the hierarchical prior q(cells | views, z0) at z0 ~ q(z0) drawn with ``key`` (the z0 that
  ``sample_posterior`` draws with the same key; the top-down features of z0 excluded). A second-stage prior
  fitted to whole posteriors reads it (``fitted_prior.fit_posteriors``)."""
  if not q.hierarchical:
    return q.mean, q.scale
  top = sample_latent(jax.random.split(key)[0], q.top_mean, q.top_scale)
  return _cells_given_top(model, params, q, top)[0]


def posterior_latent(model: NeRFVAE, params, q: posterior.Posterior):
  """The latent [B, *latent_shape] that stands for a posterior in deterministic renders: its mean
  (hierarchical: the cells' means given z0 = q(z0)'s mean, p(cells | z0)'s mean where no view sees)."""
  if not q.hierarchical:
    return q.mean
  (mean, _), _, top_down = _cells_given_top(model, params, q, q.top_mean)
  return with_top_down(mean, top_down)


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

  ``temperature`` scales every level's noise (1: the prior itself; below 1:
  samples nearer the modes, as NVAE shows them).
  """
  if model.factor:
    return fitted_prior.sample(prior_density(model, params), key, num, temperature).reshape((num,) + model.latent_shape)
  if not model.hierarchical:
    return temperature * jax.random.normal(key, (num,) + model.latent_shape)
  k_top, k_cells = jax.random.split(key)
  return cells_given_top(model, params, temperature * jax.random.normal(k_top, (num, model.top_dim)), k_cells,
                         temperature)


def cells_given_top(model: NeRFVAE, params, top, key, temperature: float = 1.0):
  """Latents [B, *latent_shape] with cells ~ p(cells | z0) (their noise scaled by ``temperature``) given z0 =
  ``top`` [B, top_dim], and the top-down features of z0 (hierarchical prior only)."""
  mean, scale, top_down = model.apply(params, top, method=NeRFVAE.cell_prior)
  return with_top_down(mean + temperature * scale * jax.random.normal(key, mean.shape), top_down)


def independent_cells(model: NeRFVAE, params, key, num: int):
  """Latents [num, *latent_shape] whose cells are independent N(0, I), as the independent prior draws them (the
  sample metrics' reference); with top-down features, those of a z0 ~ N(0, I)."""
  if not (model.hierarchical and model.top_down):
    return jax.random.normal(key, (num,) + model.latent_shape)
  k_top, k_cells = jax.random.split(key)
  _, _, top_down = model.apply(params, jax.random.normal(k_top, (num, model.top_dim)), method=NeRFVAE.cell_prior)
  return with_top_down(jax.random.normal(k_cells, top_down.shape[:2] + (model.latent_dim,)), top_down)

