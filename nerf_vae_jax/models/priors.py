"""The learned prior of the grid latent: one low-rank Gaussian over the whole latent.

With ``model.prior="independent"`` (the reference) every cell of the grid
latent has its own N(0, I) prior, so nothing says how cells go together: a
sample draws each cell's code on its own, and the scene function renders
such codes as coloured haze. ``model.prior="factor"`` is one Gaussian over
the whole latent, flattened to L numbers, with k = ``model.prior_rank``
shared factors (``FactorPrior``):

  z ~ N(mean, F F^T + diag(d))      mean, d [L], F [L, k]

the family of the second-stage prior (``models/fitted_prior.py``), whose
samples were the best of every prior tried (RESULTS.md, "Does a prior fitted
afterwards sample better?"), learned here with the model through the KL in
closed form, so that the model's own prior samples as it does and the ELBO
stays a bound. Its factors are a scene-level z0 ~ N(0, I_k) integrated out
exactly: a linear p(cells | z0) with no q(z0) to collapse. (A hierarchical
prior with a learned, non-linear p(cells | z0) and q(z0) lost to it on every
figure and was removed after commit bceea4f; RESULTS.md, "A low-rank
Gaussian as the model's own prior".)
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from nerf_vae_jax.models import fitted_prior, posterior


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
