"""Combining per-view Gaussians into the scene posterior, and its KL.

Each context view v gives a diagonal Gaussian with mean mu_v and an
unconstrained scale parameter r_v (scale = softplus(r_v + SCALE_BIAS)). The
reference method averages the per-view parameters; a product of experts (with
the prior as one more expert) is the alternative. A view mask [..., K] lets
one compiled function take 1..K views: masked views get zero weight, and
neither combination depends on the order of the views.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

# softplus(0 + SCALE_BIAS) = 1: a zero-initialised encoder head starts at the prior's scale.
SCALE_BIAS = 0.5413248546129181  # log(e - 1)
MIN_SCALE = 1e-4


def to_scale(raw):
  return jax.nn.softplus(raw + SCALE_BIAS) + MIN_SCALE


def _weights(mask, x):
  """mask [B, K, ...] (any leading dims of x) as float weights broadcastable to x."""
  return mask.astype(x.dtype).reshape(mask.shape + (1,) * (x.ndim - mask.ndim))


def masked_mean(x, mask):
  """Mean over the view axis 1 of x [B, K, ...] with mask [B, K] (or [B, K, N] for per-token masks)."""
  w = _weights(mask, x)
  return jnp.sum(w * x, axis=1) / jnp.maximum(jnp.sum(w, axis=1), 1.0)


def average(mu, raw, mask):
  """The reference combination: the mean of the views' parameters.

  Args:
    mu, raw: [B, K, ...] per-view means and unconstrained scales.
    mask: [B, K] bool, which views are real (or [B, K, N]: which views see
      each of N tokens; a token no view sees keeps the prior).

  Returns:
    (mean, scale) [B, ...].
  """
  return masked_mean(mu, mask), to_scale(masked_mean(raw, mask))


def product_of_experts(mu, raw, mask):
  """The product of the prior N(0, I) and every view's Gaussian.

  Precisions add: 1/s^2 = 1 + sum_v 1/s_v^2; means are precision-weighted.
  """
  prec_v = 1.0 / jnp.square(to_scale(raw))
  w = _weights(mask, mu)
  prec = 1.0 + jnp.sum(w * prec_v, axis=1)
  mean = jnp.sum(w * prec_v * mu, axis=1) / prec
  return mean, jax.lax.rsqrt(prec)


COMBINE = {"average": average, "poe": product_of_experts}


class Posterior(NamedTuple):
  """q(z | context views), what ``NeRFVAE.infer`` returns (a pytree: it passes through jit).

  mean, scale: [B, *latent_shape], the views' combined Gaussian (diagonal).
  """
  mean: jax.Array
  scale: jax.Array


def kl_to_standard_normal(mean, scale):
  """KL(N(mean, scale^2) || N(0, I)), summed over all but the leading axis.

  Per dimension: (mean^2 + scale^2 - 1) / 2 - log(scale).
  """
  kl = 0.5 * (jnp.square(mean) + jnp.square(scale) - 1.0) - jnp.log(scale)
  return jnp.sum(kl.reshape(kl.shape[0], -1), axis=-1)


def kl_normal(mean, scale, prior_mean, prior_scale):
  """KL(N(mean, scale^2) || N(prior_mean, prior_scale^2)), diagonal, summed over all but the leading axis.

  Per dimension: log(s_p / s) + (s^2 + (m - m_p)^2) / (2 s_p^2) - 1/2; exactly 0 where the two are equal.
  """
  kl = (jnp.log(prior_scale) - jnp.log(scale)
        + 0.5 * (jnp.square(scale) + jnp.square(mean - prior_mean)) / jnp.square(prior_scale) - 0.5)
  return jnp.sum(kl.reshape(kl.shape[0], -1), axis=-1)


def log_normal(x, mean, scale):
  """log N(x; mean, scale^2) summed over all but the leading axis."""
  lp = -0.5 * jnp.square((x - mean) / scale) - jnp.log(scale) - 0.5 * jnp.log(2 * jnp.pi)
  return jnp.sum(lp.reshape(lp.shape[0], -1), axis=-1)
