"""The learned priors of the grid latent: a scene-level z0 and p(cells | z0), or one low-rank Gaussian.

With ``model.prior="independent"`` (the reference) every cell of the grid
latent has its own N(0, I) prior, so nothing says how cells go together: a
sample draws each cell's code on its own, and the scene function renders
such codes as coloured haze. ``model.prior="hierarchical"`` is a two-level
latent, as in ladder VAEs and NVAE:

  z0 ~ N(0, I)                      [top_dim], the scene as a whole
  cells | z0 ~ N(mu(z0), s(z0)^2)   [G^3, D], from a small 3-D conv decoder

With ``model.top_down`` = T > 0 the decoder also hands T deterministic
features per cell, h(z0), to the scene function, beside the cells (the
latent it reads is [G^3, D + T]): z0 then reaches the pixels directly, as
the top-down path of NVAE's decoder does, and is trained by the likelihood,
not by the KL of the cells alone.

The posterior is q(z0 | views) q(cells | views, z0):

* q(z0 | views): a 3-D conv encoder over the grid of the views' per-cell
  features (averaged over the views that see each cell, the reference's
  combination), so z0 is inferred in the frame all views share;
* q(cells | views, z0): the views' averaged Gaussian (as with the independent
  prior) on the cells some view sees, and p(cells | z0) on the cells no view
  sees, so the prior fills in what the context views leave open.

The KL is KL(q(z0) || N(0, I)) + E_q(z0) KL(q(cells | z0) || p(cells | z0)),
both levels in closed form given one z0 sample (``nerf_vae.sample_posterior``);
the ELBO and the IWAE bound stay bounds on log p(views). Both networks end in
zero-initialised layers: at initialisation p(cells | z0) = N(0, I) and
q(z0) = N(0, I), the independent prior's starting point.

``model.prior="factor"`` is one Gaussian over the whole latent, flattened to
L numbers, with k = ``model.prior_rank`` shared factors (``FactorPrior``):

  z ~ N(mean, F F^T + diag(d))      mean, d [L], F [L, k]

the family of the second-stage prior (``models/fitted_prior.py``), whose
samples were the best of every prior tried (RESULTS.md, "Does a prior fitted
afterwards sample better?"), learned here with the model through the KL in
closed form, so that the model's own prior samples as it does and the ELBO
stays a bound. Its factors are z0 integrated out exactly: a linear
p(cells | z0) with no q(z0) to collapse.

Grids: [B, G, G, G, C] with axes (x, y, z), the cell order of ``models/grid.py``
(flat index (ix G + iy) G + iz). G must be a power of two (the decoder doubles
2 -> 4 -> ... -> G; the encoder halves G -> ... -> 2).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from nerf_vae_jax import errors
from nerf_vae_jax.models import fitted_prior, grid, posterior


def check_grid_size(grid_size: int) -> None:
  if grid_size < 2 or grid_size & (grid_size - 1):
    raise errors.ConfigError(f"config.model.grid_size={grid_size}: the hierarchical prior needs a power of two "
                             f">= 2 (its 3-D convolutions halve and double the grid); choose e.g. 8.")


def _with_coordinates(x):
  """x [B, g, g, g, C] with the cell centres in [-1, 1]^3 appended as 3 channels (where each cell is)."""
  b, g = x.shape[0], x.shape[1]
  xyz = grid.cell_centres(g, 1.0).reshape(1, g, g, g, 3)
  return jnp.concatenate([x, jnp.broadcast_to(xyz, (b, g, g, g, 3)).astype(x.dtype)], axis=-1)


NETS = ("pyramid", "per_cell", "slots")
SLOTS = 4  # "slots": objects per scene that z0 places
SCENE_DIMS = 8  # "slots": numbers of z0 for the scene as a whole (backdrop, light)


def slot_split(top_dim: int) -> tuple[int, int]:
  """"slots": z0 of ``top_dim`` numbers -> (appearance numbers per slot A, scene numbers S), with
  top_dim = SLOTS (3 + A) + S: each slot is a position (3) and an appearance (A)."""
  a = (top_dim - SCENE_DIMS) // SLOTS - 3
  if a < 1:
    raise errors.ConfigError(f"config.model.top_dim={top_dim} is too small for prior_net=slots: it needs "
                             f"{SLOTS} slots of a position and at least one appearance number, and "
                             f"{SCENE_DIMS} scene numbers ({SLOTS * 4 + SCENE_DIMS} or more); choose e.g. 52.")
  return a, top_dim - SLOTS * (3 + a)


def splat_slots(top, grid_size: int, size_net):
  """"slots": z0 [B, top_dim] -> per-cell features [B, G, G, G, 1 + A + S]. Each slot is a Gaussian bump at
  its position (0.9 tanh of its first 3 numbers, in the grid's [-1, 1]^3) of a width that ``size_net`` gives
  from its appearance (tanh of its other numbers), carrying [1, appearance]; the bumps add up, and every cell
  also reads the scene numbers (tanh of them).
  Why: a few objects are a few choices each (where, how big, what), which a dense map from z0 to 8^3 cells
  has to discover (RESULTS.md, "Would a prior that knew the objects sample well?")."""
  b, g = top.shape[0], grid_size
  a, s = slot_split(top.shape[-1])
  slots, scene = top[:, :SLOTS * (3 + a)].reshape(b, SLOTS, 3 + a), top[:, SLOTS * (3 + a):]
  # Bounded: a draw from N(0, I)'s tails must not feed the convolutions values that no posterior gave them
  # (unbounded, some prior samples rendered as saturated noise; RESULTS.md, "A slot decoder ...").
  pos, app, scene = 0.9 * jnp.tanh(slots[..., :3]), jnp.tanh(slots[..., 3:]), jnp.tanh(scene)  # [B, K, 3], [B, K, A]
  width = 0.1 + nn.softplus(size_net(app))[..., 0]  # [B, K]; a cell is 2 / G wide
  centres = grid.cell_centres(g, 1.0)  # [G^3, 3]
  d2 = jnp.sum(jnp.square(centres[None, :, None] - pos[:, None]), axis=-1)  # [B, G^3, K]
  bumps = jnp.exp(-0.5 * d2 / jnp.square(width)[:, None])
  feats = jnp.einsum("bck,bka->bca", bumps, jnp.concatenate([jnp.ones((b, SLOTS, 1)), app], axis=-1))
  feats = jnp.concatenate([feats, jnp.broadcast_to(scene[:, None], (b, g ** 3, s))], axis=-1)
  return feats.reshape(b, g, g, g, -1)


class TopEncoder(nn.Module):
  """Per-cell features [B, G^3, C] (and which cells a view sees, [B, G^3]) -> q(z0)'s (mean, raw scale) [B, top_dim].

  net "pyramid" (and "slots"): strided 3-D convolutions G -> ... -> 2, then dense layers;
  "per_cell": one 3-D convolution, 4 channels per cell, then a dense layer over all cells.
  """
  top_dim: int
  channels: int
  grid_size: int
  net: str = "pyramid"

  @nn.compact
  def __call__(self, feats, seen):
    b, g = feats.shape[0], self.grid_size
    x = jnp.concatenate([feats, seen[..., None].astype(feats.dtype)], axis=-1).reshape(b, g, g, g, -1)
    x = nn.swish(nn.Conv(self.channels, (3, 3, 3))(_with_coordinates(x)))
    if self.net == "per_cell":
      x = nn.Dense(4)(x)
    else:
      while x.shape[1] > 2:
        x = nn.swish(nn.Conv(self.channels, (3, 3, 3), strides=(2, 2, 2))(_with_coordinates(x)))
    x = nn.swish(nn.Dense(2 * self.channels)(x.reshape(b, -1)))
    out = nn.Dense(2 * self.top_dim, kernel_init=nn.initializers.zeros)(x)
    mean, raw = jnp.split(out, 2, axis=-1)
    return mean, raw


class CellPrior(nn.Module):
  """z0 [B, top_dim] -> p(cells | z0)'s (mean, raw scale), each [B, G^3, D].

  net "pyramid": a dense layer to 2^3 cells, then 3-D convolutions and nearest-neighbour doubling up to G;
  "per_cell": a dense layer straight to every cell (a learned basis per cell, as in probabilistic PCA),
  then one 3-D convolution; "slots": z0 read as a few objects, each a bump at its position on the grid
  (``splat_slots``), then two 3-D convolutions.
  """
  latent_dim: int
  channels: int
  grid_size: int
  net: str = "pyramid"
  top_down: int = 0  # > 0: also return this many deterministic features per cell (the scene function reads them)

  @nn.compact
  def __call__(self, top):
    """Returns (mean, raw scale) [B, G^3, D] and the top-down features [B, G^3, top_down] (None if 0)."""
    b, g = top.shape[0], (2 if self.net == "pyramid" else self.grid_size)
    if self.net == "slots":
      x = splat_slots(top, g, nn.Dense(1, name="slot_size"))
      x = nn.swish(nn.Conv(self.channels, (3, 3, 3))(_with_coordinates(x)))
    else:
      x = nn.swish(nn.Dense(g ** 3 * self.channels)(top)).reshape(b, g, g, g, self.channels)
    while True:
      x = nn.swish(nn.Conv(self.channels, (3, 3, 3))(_with_coordinates(x)))
      if x.shape[1] == self.grid_size:
        break
      x = jnp.repeat(jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2), 2, axis=3)  # nearest-neighbour x2
    out = nn.Dense(2 * self.latent_dim, kernel_init=nn.initializers.zeros)(x)
    mean, raw = jnp.split(out.reshape(b, self.grid_size ** 3, 2 * self.latent_dim), 2, axis=-1)
    context = None
    if self.top_down:
      context = nn.Dense(self.top_down, name="top_down")(x).reshape(b, self.grid_size ** 3, self.top_down)
    return mean, raw, context


FACTOR_INIT = 0.01  # the factors' initial std: at F = 0 the KL's gradient in F is 0 (a saddle), so F starts off it


class FactorPrior(nn.Module):
  """() -> the prior N(mean, F F^T + diag(d)) over latents of ``size`` numbers, as a ``fitted_prior.FittedPrior``.

  Starts at N(0, I) (d = 1, mean 0) with small random factors."""
  size: int
  rank: int

  @nn.compact
  def __call__(self) -> fitted_prior.FittedPrior:
    mean = self.param("mean", nn.initializers.zeros, (self.size,))
    factors = self.param("factors", nn.initializers.normal(FACTOR_INIT), (self.size, self.rank))
    raw = self.param("raw_scale", nn.initializers.zeros, (self.size,))
    return fitted_prior.FittedPrior(mean, factors, jnp.square(posterior.to_scale(raw)))
