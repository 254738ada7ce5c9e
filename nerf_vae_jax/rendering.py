"""Volume rendering: sampling along rays and alpha compositing.

Pure functions shared by the model, the NeRF baseline and evaluation. Samples
are described by bin *edges* ``t_edges`` [..., S+1] along unit-length rays;
the scene function is queried at bin midpoints and its density is taken as
constant inside each bin. Rays only sample inside the scene's bounding sphere
(``geometry.ray_sphere_bounds``); what lies beyond is the background colour,
composited explicitly, so no 1e10 "infinite" bin is needed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nerf_vae_jax import geometry


def volume_render(density, rgb, t_edges, background):
  """Alpha-composites samples along rays.

  Args:
    density: [..., S] >= 0, per unit length.
    rgb: [..., S, 3] colours of the samples.
    t_edges: [..., S+1] increasing bin edges (distance along unit rays).
    background: [..., 3] or broadcastable: colour seen where rays exit.

  Returns:
    dict with rgb [..., 3] (composited over the background), depth [...]
    (expected termination distance *given that the ray terminates*: the
    weighted mean of bin midpoints, normalised by opacity; 0 where acc = 0),
    acc [...] (opacity = sum of weights, in [0, 1]) and weights [..., S].
  """
  delta = jnp.diff(t_edges, axis=-1)
  tau = density * delta  # optical depth of each bin
  # Transmittance before each bin: exp(-sum of earlier optical depths), from a
  # cumulative sum (stable; no product of many (1 - alpha) terms).
  before = jnp.concatenate([jnp.zeros_like(tau[..., :1]), jnp.cumsum(tau[..., :-1], axis=-1)], axis=-1)
  alpha = -jnp.expm1(-tau)  # 1 - exp(-tau), accurate for small tau
  weights = jnp.exp(-before) * alpha
  acc = jnp.sum(weights, axis=-1)
  mids = 0.5 * (t_edges[..., 1:] + t_edges[..., :-1])
  depth = jnp.sum(weights * mids, axis=-1) / jnp.maximum(acc, 1e-10)
  color = jnp.sum(weights[..., None] * rgb, axis=-2) + (1.0 - acc)[..., None] * background
  return {"rgb": color, "depth": jnp.where(acc > 1e-10, depth, 0.0), "acc": acc, "weights": weights}


def stratified_edges(key, near, far, num_samples: int, randomized: bool = True):
  """Bin edges [..., S+1] from near [...] to far [...] in S equal bins.

  With ``randomized``, each interior edge is jittered uniformly within half a
  bin either way (edges stay ordered, the end points stay put), so over
  training every depth in [near, far] is sampled.
  """
  u = jnp.linspace(0.0, 1.0, num_samples + 1)
  u = jnp.broadcast_to(u, near.shape + (num_samples + 1,))
  if randomized:
    jitter = (jax.random.uniform(key, u.shape) - 0.5) / num_samples
    interior = jnp.zeros(num_samples + 1).at[1:-1].set(1.0)
    u = u + jitter * interior
  return near[..., None] + (far - near)[..., None] * u


def resample_edges(key, t_edges, weights, num_samples: int, randomized: bool = True, padding: float = 0.01):
  """Hierarchical sampling: new edges [..., S'+1] by inverting the CDF of the weights.

  The coarse weights, plus a small uniform floor (``padding``, so that no
  region gets zero probability), define a piecewise-constant density over the
  coarse bins; the new edges are its quantiles at S'+1 sorted uniforms
  (stratified if ``randomized``, else evenly spaced). Where the coarse pass
  saw nothing (all weights ~0) the new edges are uniform.

  Args:
    t_edges: [..., S+1]; weights: [..., S].
  """
  w = weights + padding / weights.shape[-1]
  pdf = w / jnp.sum(w, axis=-1, keepdims=True)
  cdf = jnp.concatenate([jnp.zeros_like(pdf[..., :1]), jnp.minimum(1.0, jnp.cumsum(pdf, axis=-1))], axis=-1)
  n = num_samples + 1
  if randomized:
    u = (jnp.arange(n) + jax.random.uniform(key, t_edges.shape[:-1] + (n,))) / n
  else:
    u = jnp.broadcast_to((jnp.arange(n) + 0.5) / n, t_edges.shape[:-1] + (n,))
  # Ends pinned to the sampling interval.
  u = u.at[..., 0].set(0.0).at[..., -1].set(1.0)
  # Invert the piecewise-linear CDF bin by bin.
  # Bin of each u: the number of CDF knots <= u (a dense compare beats a
  # vmapped searchsorted for tens of bins).
  idx = jnp.sum(u[..., :, None] >= cdf[..., None, :], axis=-1)
  idx = jnp.clip(idx, 1, cdf.shape[-1] - 1)
  c0, c1 = jnp.take_along_axis(cdf, idx - 1, axis=-1), jnp.take_along_axis(cdf, idx, axis=-1)
  t0, t1 = jnp.take_along_axis(t_edges, idx - 1, axis=-1), jnp.take_along_axis(t_edges, idx, axis=-1)
  frac = jnp.clip((u - c0) / jnp.maximum(c1 - c0, 1e-12), 0.0, 1.0)
  new = t0 + frac * (t1 - t0)
  # Sorted uniforms through a monotone inverse CDF are already in order; the running max only removes a
  # rounding step back where an edge lands on a knot (a sort would cost S' log S' for nothing).
  return jax.lax.stop_gradient(jax.lax.cummax(new, axis=new.ndim - 1))


def positional_encoding(x, num_frequencies: int, include_input: bool = True):
  """[..., D] -> [..., D * (2 F + include_input)]: sin and cos at 2^0..2^(F-1) pi x.

  One sin and one cos at pi x; each higher octave from the one below by the double-angle formulas
  (sin 2a = 2 sin a cos a, cos 2a = 1 - 2 sin^2 a), multiplications only. Why: on the CPU the transcendentals
  of the sample points' encoding took about 6% of a `tiny` step's device time, and this change took the step
  from 450 to 417 ms on 2 host devices (BENCHMARKS.md, "Where the factor prior's extra time went").
  Rounding doubles with each octave; against float64, on [-1.5, 1.5]: off by 1.8e-5 at the recipe's F = 6
  and 7.6e-4 at F = 10, where float32 sin(2^k pi x) itself is off by 1.2e-5 and 1.9e-4 (its argument's
  rounding); tested."""
  sin, cos = jnp.sin(jnp.pi * x), jnp.cos(jnp.pi * x)
  sines, cosines = [sin], [cos]
  for _ in range(num_frequencies - 1):
    sin, cos = 2.0 * sin * cos, 1.0 - 2.0 * sin * sin
    sines.append(sin)
    cosines.append(cos)
  return jnp.concatenate(([x] if include_input else []) + sines + cosines, axis=-1)


def render_coarse_fine(field, background, origins, directions, key, *, num_coarse: int, num_fine: int,
                       scene_radius: float, randomized: bool = True, density_noise: float = 0.0):
  """NeRF's two passes along rays [B, R, 3]: stratified, then inverse-CDF samples.

  Samples lie between where each ray enters and leaves the scene's bounding
  sphere; rays that miss it show the background.

  Args:
    field: (points [B, R, S, 3], directions [B, R, 3], noise) -> (density [B, R, S],
      rgb [B, R, S, 3]); the scene function (NeRF-VAE closes it over a latent).
      ``noise`` is None or [B, R, S], added to the density before its activation.
    background: [B, 1, 3] (or broadcastable to [B, R, 3]).
    density_noise: with ``randomized``, the std of Gaussian noise on the raw
      densities of both passes (NeRF's regulariser, for training only): a
      half-transparent density then renders differently at each step, so the
      fit prefers empty or opaque space (RESULTS.md, "Where the haze comes from").

  Returns:
    {"coarse": ..., "fine": ...}, each the dict of ``volume_render`` ([B, R] ...).
  """
  near, far, _ = geometry.ray_sphere_bounds(origins, directions, scene_radius)
  k_coarse, k_fine, k_noise = jax.random.split(key, 3)

  def march(t_edges, k):
    mids = 0.5 * (t_edges[..., 1:] + t_edges[..., :-1])
    points = origins[..., None, :] + mids[..., None] * directions[..., None, :]
    noise = density_noise * jax.random.normal(k, mids.shape) if density_noise and randomized else None
    density, rgb = field(points, directions, noise)
    return volume_render(density, rgb, t_edges, background)

  t_coarse = stratified_edges(k_coarse, near, far, num_coarse, randomized)
  coarse = march(t_coarse, jax.random.fold_in(k_noise, 0))
  fine = march(resample_edges(k_fine, t_coarse, coarse["weights"], num_fine, randomized),
               jax.random.fold_in(k_noise, 1))
  return {"coarse": coarse, "fine": fine}


def render_cameras(render_rays, intrinsics, cam_to_world, height: int, width: int, chunk: int = 4096):
  """Renders whole cameras in chunks of rays, so memory stays bounded at any image size.

  Args:
    render_rays: (origins [B, n, 3], directions [B, n, 3]) -> dict of [B, n, ...].
    intrinsics: [B, V, 4]; cam_to_world: [B, V, 4, 4].
    chunk: rays per scene per chunk (the chunks run one after another in a
      ``lax.map``, so peak memory is that of one chunk).

  Returns:
    the dict of ``render_rays`` with each x [B, n, ...] as [B, V, H, W, ...].
  """
  b, v = intrinsics.shape[:2]
  o, d = geometry.pixel_rays(intrinsics, cam_to_world, height, width)
  n = v * height * width
  chunk = min(chunk, n)
  pad = -n % chunk
  flat = lambda x: jnp.pad(x.reshape(b, n, 3), ((0, 0), (0, pad), (0, 0))).reshape(b, -1, chunk, 3).swapaxes(0, 1)
  out = jax.lax.map(lambda rays: render_rays(*rays), (flat(o), flat(d)))  # [n_chunks, B, chunk, ...]
  unflat = lambda x: x.swapaxes(0, 1).reshape((b, -1) + x.shape[3:])[:, :n].reshape(
      (b, v, height, width) + x.shape[3:])
  return jax.tree.map(unflat, out)
