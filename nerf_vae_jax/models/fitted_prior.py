"""A second-stage prior: a Gaussian fitted to the aggregate posterior of the training scenes.

The model's own prior over the grid's cells says too little about how cells
go together, and its samples render as haze (RESULTS.md, "Can the model
sample scenes?"). This prior is fitted afterwards, to latents z ~ q(z | views)
of many training scenes (flattened, L = G^3 x D numbers), as a Gaussian with
a low-rank-plus-diagonal covariance:

  p2(z) = N(z; mean, F F^T + diag(d)),  F [L, k] k shared factors, d the
  variance each coordinate has of its own (factor analysis, started from
  probabilistic PCA).

``fit`` takes one latent per scene; ``fit_posteriors`` each scene's posterior
as a whole (its mean and variance): the same Gaussian family, whose factors
then describe how scenes differ rather than the noise of one sample.

p2 is a proper density, so it can replace the model's prior in the ELBO and
the IWAE bound (``evaluation/second_stage.py``): the bounds stay bounds on the
log-likelihood of the model whose prior is p2. The decoder is unchanged.

The same family also serves as the model's own prior, learned with the
model through ``kl_from_diagonal`` (``model.prior="factor"``,
``models/priors.py``).

Pure functions on numpy/JAX arrays; densities use the Woodbury identity, so
nothing of size L x L is formed.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class FittedPrior(NamedTuple):
  mean: jax.Array  # [L]
  factors: jax.Array  # [L, k]
  diag: jax.Array  # [L], > 0


def fit(z, rank: int, iterations: int = 30, min_variance: float = 1e-4) -> FittedPrior:
  """The Gaussian of the module's docstring fitted to latents z [N, L] (N >= 2 scenes) by factor analysis.

  Starts from probabilistic PCA (the top-k principal directions, less the mean variance of the others) and
  runs ``iterations`` EM steps of factor analysis, which give each coordinate its own residual variance
  (0: PPCA alone). Nothing L x L is formed: each step costs O(N L k)."""
  z = np.asarray(z, np.float64)
  n, dim = z.shape
  if n < 2 or not 0 < rank < min(n, dim):
    raise ValueError(f"fit needs at least 2 latents and 0 < rank < min(N, L) = {min(n, dim)}; got N={n}, "
                     f"rank={rank}.")
  mean = z.mean(0)
  x = z - mean
  var = x.var(0)
  _, s, vt = np.linalg.svd(x, full_matrices=False)
  eig = s ** 2 / n
  noise = eig[rank:].sum() / (dim - rank)  # PPCA's isotropic residual (Tipping and Bishop)
  factors = vt[:rank].T * np.sqrt(np.maximum(eig[:rank] - noise, 0.0))
  diag = np.maximum(var - np.square(factors).sum(1), min_variance)
  for _ in range(iterations):
    # E step: h | x ~ N(beta x, I - beta F), beta = (I + F^T D^-1 F)^-1 F^T D^-1.
    fd = factors / diag[:, None]
    beta = np.linalg.solve(np.eye(rank) + factors.T @ fd, fd.T)  # [k, L]
    s_beta = x.T @ (x @ beta.T) / n  # S beta^T [L, k], S the sample covariance
    hh = np.eye(rank) - beta @ factors + beta @ s_beta  # E[h h^T] averaged over the latents
    # M step.
    factors = np.linalg.solve(hh, s_beta.T).T
    diag = np.maximum(var - np.sum(factors * s_beta, 1), min_variance)
  return FittedPrior(*(jnp.asarray(a, jnp.float32) for a in (mean, factors, diag)))


def fit_posteriors(means, variances, rank: int, iterations: int = 30) -> FittedPrior:
  """The Gaussian fitted to whole posteriors q_i = N(means[i], diag(variances[i])) ([N, L] each) rather than
  to one sample of each: factor analysis of the means, plus the posteriors' average variance on the diagonal.

  Its covariance is then the aggregate posterior's, Cov(means) + E[diag(variances)] (up to the factors'
  rank), the Gaussian that maximises the expected log-density E_q[log p2(z)] over the scenes. Fitted to one
  sample per scene instead, the factors also fit chance directions of the posteriors' noise: with N scenes of
  L numbers, noise of variance s^2 alone gives the sample covariance eigenvalues up to s^2 (1 + sqrt(L / N))^2
  (9 s^2 at L = 8192, N = 2048), above most of what the scenes' differences carry."""
  means = np.asarray(means, np.float64)
  variances = np.asarray(variances, np.float64)
  if means.shape != variances.shape or np.any(variances < 0):
    raise ValueError(f"fit_posteriors needs means and non-negative variances of one shape; got {means.shape} "
                     f"and {variances.shape}.")
  p = fit(means, rank, iterations)
  return p._replace(diag=p.diag + jnp.asarray(variances.mean(0), jnp.float32))


def explained_variance(p: FittedPrior) -> float:
  """The share of the total variance the k factors carry."""
  low = float(jnp.sum(jnp.square(p.factors)))
  return low / (low + float(jnp.sum(p.diag)))


def sample(p: FittedPrior, key, num: int, temperature: float = 1.0):
  """Latents [num, L] from p2, their noise scaled by ``temperature`` (1: p2 itself)."""
  k_low, k_diag = jax.random.split(key)
  low = jax.random.normal(k_low, (num, p.factors.shape[1])) @ p.factors.T
  return p.mean + temperature * (low + jnp.sqrt(p.diag) * jax.random.normal(k_diag, (num, p.mean.shape[0])))


class Woodbury(NamedTuple):
  """C = D + F F^T through the Woodbury identity: C^-1 = D^-1 - A M^-1 A^T with A = D^-1 F [L, k] and
  M = I + F^T D^-1 F [k, k]; h [L] the diagonal of A M^-1 A^T; log|C| = log|D| + log|M|."""
  a: jax.Array
  m_inv: jax.Array
  h: jax.Array
  logdet_m: jax.Array  # log|M|


def woodbury(p: FittedPrior) -> Woodbury:
  """The densities' shared part, O(L k^2) (4 L k^2 FLOPs); pass it to them to compute it once for several.

  Plain matrix products and a k x k inverse (M >= I is well conditioned), no triangular solves over L: on the
  CPU their gradients cost 1.7x as much (a KL's value and gradient, L = 8,192, k = 128: 44 ms against 26 ms
  on one core)."""
  a = p.factors / p.diag[:, None]
  chol = jnp.linalg.cholesky(jnp.eye(p.factors.shape[1]) + p.factors.T @ a)
  m_inv = jax.scipy.linalg.cho_solve((chol, True), jnp.eye(p.factors.shape[1]))
  h = jnp.sum(a * (a @ m_inv), -1)
  return Woodbury(a, m_inv, h, 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol))))


def _low_rank_quadratic(w: Woodbury, x):
  """x^T A M^-1 A^T x [B] of x [B, L] (x^T C^-1 x = sum(x^2 / d) less this): O(L k) per row."""
  u = x @ w.a
  return jnp.sum(u * (u @ w.m_inv), -1)


def log_prob(p: FittedPrior, z, w: Woodbury | None = None):
  """log p2(z) [B] of latents z [B, ...] (flattened to [B, L]); ``w``: ``woodbury(p)`` if computed already."""
  x = z.reshape(z.shape[0], -1) - p.mean
  w = woodbury(p) if w is None else w
  maha = jnp.sum(x * x / p.diag, -1) - _low_rank_quadratic(w, x)
  return -0.5 * (maha + jnp.sum(jnp.log(p.diag)) + w.logdet_m + x.shape[1] * math.log(2 * math.pi))


def kl_from_diagonal(p: FittedPrior, mean, scale, w: Woodbury | None = None):
  """KL(N(mean, diag(scale^2)) || p2) [B] of diagonal Gaussians with mean and scale [B, ...] (flattened to
  [B, L]), in closed form: (tr(C^-1 S) + delta^T C^-1 delta - L + log|C| - log|S|) / 2, delta = mean - p2's.

  Written as the KL to N(mean, D) alone, summed coordinate by coordinate, plus the factors' part:
  0.5 (log|M| - sum(s^2 h) - delta^T A M^-1 A^T delta) (``Woodbury``; h shared by every scene: O(L k^2) once,
  ``w`` if computed already, then O(L k) per scene). Summing the whole-latent terms first (each ~L, 8,192
  at the demo's size) and subtracting lost the KL's digits in float32 when q and p were close (a KL of 0.3
  off by 5e-5 between two orders of summation). Why closed form: a model whose prior is p2
  (``model.prior="factor"``) trains through this KL, and a one-sample estimate of it would be far noisier."""
  m = mean.reshape(mean.shape[0], -1)
  s2 = jnp.square(scale.reshape(scale.shape[0], -1))
  w = woodbury(p) if w is None else w
  delta = m - p.mean
  ratio = s2 / p.diag
  diagonal = jnp.sum(ratio - 1.0 - jnp.log(ratio) + delta * delta / p.diag, -1)  # each term >= 0
  return 0.5 * (diagonal + w.logdet_m - s2 @ w.h - _low_rank_quadratic(w, delta))


def marginal_scale(p: FittedPrior):
  """The standard deviation [L] of each coordinate under p2 alone: sqrt(d + |F_i|^2)."""
  return jnp.sqrt(p.diag + jnp.sum(jnp.square(p.factors), -1))


def save(path: str, p: FittedPrior, **info) -> None:
  """To an .npz: the arrays and ``info`` (numbers and strings: how it was fitted)."""
  np.savez(path, **{k: np.asarray(v) for k, v in p._asdict().items()}, **{f"info_{k}": v for k, v in info.items()})


def load(path: str) -> tuple[FittedPrior, dict]:
  with np.load(path) as f:
    prior = FittedPrior(*(jnp.asarray(f[k]) for k in FittedPrior._fields))
    info = {k[len("info_"):]: f[k].item() for k in f.files if k.startswith("info_")}
  return prior, info
