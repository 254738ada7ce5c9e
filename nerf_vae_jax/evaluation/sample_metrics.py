"""How good NeRF-VAE's samples are: prior samples rendered from real cameras, scored against real views.

The test split is cut in two halves of N scenes each, A and R, and only
their held-out views (4..V-1) are used, the same views in every set:

  samples             N prior samples, sample i seen from the cameras of scene A_i
  independent cells   N latents with every cell from N(0, I) (the independent
                      prior's samples), through the same decoder and cameras
  floor               the real views of A (two disjoint sets of real scenes)
  reconstructions     latents z ~ q(z | A_i's 4 context views), seen from A_i's
                      held-out cameras
  mean colour         A's views, each painted with its mean colour

Each set's Fréchet distance to R's views is taken in the probe's features
(``probe.py``); the floor is what a perfect generator would score at this N,
and the reconstructions what a prior that drew latents as the posteriors of
real scenes do would score through this decoder (a prior can do no better
than the decoder renders).
The samples' FD comes with its spread (``frechet_spread``: the standard
deviation over bootstrap resamples of the N sample scenes), about how much
another draw of the same prior moves it.
The object statistics (``sample_quality.compare_objects``) compare the
samples' rendered opacity with A's true masks.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from nerf_vae_jax import sharding
from nerf_vae_jax.evaluation import probe_net
from nerf_vae_jax.evaluation import protocol, sample_quality, second_stage
from nerf_vae_jax.models import nerf_vae


@functools.partial(jax.jit, static_argnums=(0, 5, 6, 7))
def _render(model, params, latents, intrinsics, cam_to_world, height: int, width: int, chunk: int):
  out = nerf_vae.render_views(model, params, latents, intrinsics, cam_to_world, height, width, chunk)
  return {"rgb": out["rgb"], "acc": out["acc"]}


def render_latents(model, params, latents, intrinsics, cam_to_world, height: int, width: int, chunk: int = 4096,
                   batch_size: int = 8) -> dict:
  """Renders latents [N, ...] from cameras [N, V, ...], ``batch_size`` scenes at a time over every device.

  Returns numpy rgb [N, V, H, W, 3] and acc [N, V, H, W].
  """
  mesh = sharding.make_mesh()
  batch_size = -(-batch_size // mesh.size) * mesh.size
  params = jax.device_put(params, sharding.replicated(mesh))
  n, out = len(latents), []
  for start in range(0, n, batch_size):
    part = {"z": latents[start:start + batch_size], "intr": intrinsics[start:start + batch_size],
            "c2w": cam_to_world[start:start + batch_size]}
    m = len(part["z"])
    part = {k: np.concatenate([np.asarray(v), np.repeat(np.asarray(v)[-1:], batch_size - m, 0)]) for k, v in part.items()}
    part = sharding.global_batch(part, mesh)
    res = jax.device_get(_render(model, params, part["z"], part["intr"], part["c2w"], height, width, chunk))
    out.append({k: v[:m] for k, v in res.items()})
  return {k: np.concatenate([o[k] for o in out]) for k in out[0]}


def _views(scenes, key):
  return np.stack([s[key][protocol.HELD_OUT] for s in scenes])


def mean_colour_images(images: np.ndarray) -> np.ndarray:
  """Every image [..., H, W, 3] painted with its own mean colour (uint8)."""
  mean = images.reshape(images.shape[:-3] + (-1, 3)).mean(-2)
  return np.broadcast_to(np.round(mean)[..., None, None, :], images.shape).astype(np.uint8)


def measure(model, params, src, probe, *, num_scenes: int = 128, seed: int = 0, chunk: int = 4096,
            temperature: float = 1.0, sample_prior=nerf_vae.sample_prior, prior_name: str | None = None,
            references: dict | None = None):
  """The sample metrics of a model (see the module's docstring).

  Args:
    src: the test split (``source.SceneSource``), at least 2 scenes.
    probe: ``probe.load_or_train``'s (model, params, info).
    num_scenes: N, the scenes per set (at most half the split).
    sample_prior: draws the samples (``nerf_vae.sample_prior``'s signature), e.g. a fitted prior's
      (``second_stage.sampler``), named ``prior_name`` in the metrics.
    references: a dict that keeps the reference sets (independent cells, reconstructions) between calls on
      the same model and params, so that scoring a second prior does not render them again (``{}`` at first;
      the caller keys it by run and step). They depend on the scenes per set and the seed, which are checked.

  Returns:
    (metrics: a JSON-able dict, renders: {"samples": rgb/acc, "independent": rgb/acc, "real": uint8 images of A}).
  """
  n = min(num_scenes, len(src) // 2)
  a, r = [src[i] for i in range(n)], [src[n + i] for i in range(n)]
  intr, c2w = _views(a, "intrinsics"), _views(a, "cam_to_world")
  real_a, real_r, masks_a = _views(a, "images"), _views(r, "images"), _views(a, "masks")
  h, w = real_a.shape[2:4]
  k_samples, k_independent = jax.random.split(jax.random.PRNGKey(seed))
  render = functools.partial(render_latents, model, params, intrinsics=intr, cam_to_world=c2w, height=h, width=w,
                             chunk=chunk)
  samples = render(np.asarray(sample_prior(model, params, k_samples, n, temperature)))
  flat = lambda x: x.reshape((-1,) + x.shape[2:])
  feats = lambda images: probe_net.features(probe, flat(images))
  to_uint8 = lambda rgb: np.round(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)
  f_r = feats(real_r)
  cache = references if references is not None else {}
  if cache.get("key") != (n, seed):
    cache.clear()
    cache["key"] = (n, seed)
  if "independent" not in cache:
    if model.prior_in_use != "independent" or sample_prior is not nerf_vae.sample_prior:
      independent = render(np.asarray(nerf_vae.independent_cells(model, k_independent, n)))
    else:  # the independent prior's own samples
      independent = samples
    posteriors = second_stage.posterior_latents(model, params, a.__getitem__, n, seed=seed, log=lambda _: None)
    reconstructions = render(posteriors.reshape((n,) + model.latent_shape))
    cache["independent"] = independent
    cache["fd"] = {"independent_cells": sample_quality.frechet_distance(feats(to_uint8(independent["rgb"])), f_r),
                   "floor": sample_quality.frechet_distance(feats(real_a), f_r),
                   "reconstructions": sample_quality.frechet_distance(feats(to_uint8(reconstructions["rgb"])), f_r),
                   "mean_colour": sample_quality.frechet_distance(feats(mean_colour_images(real_a)), f_r)}
  independent = cache["independent"]
  f_samples = feats(to_uint8(samples["rgb"]))
  fd = {"samples": sample_quality.frechet_distance(f_samples, f_r), **cache["fd"]}
  metrics = {
      "num_scenes": n, "views_per_scene": int(real_a.shape[1]), "temperature": temperature,
      "prior": prior_name or model.prior_in_use,
      "frechet": fd,
      # The samples' FD moves by about this much with their draw (bootstrap over the N scenes).
      "frechet_spread": sample_quality.frechet_spread(f_samples, f_r, groups=n, seed=seed),
      "objects": sample_quality.compare_objects(flat(samples["acc"]), flat(masks_a)),
      "objects_independent_cells": sample_quality.compare_objects(flat(independent["acc"]), flat(masks_a)),
      "probe": probe[2]["held_out"],
  }
  return metrics, {"samples": samples, "independent": independent, "real": real_a}


def summary_line(m: dict) -> str:
  """One line: the Fréchet distances with their reference points, and the object statistics."""
  fd, o = m["frechet"], m["objects"]
  return (f"Fréchet distance {fd['samples']:.2f} ± {m['frechet_spread']:.1f} (floor {fd['floor']:.2f}, "
          f"independent N(0, I) cells {fd['independent_cells']:.2f}, reconstructions {fd['reconstructions']:.2f}, "
          f"mean colour {fd['mean_colour']:.2f}); opaque coverage "
          f"{o['coverage_samples']:.3f} vs data {o['coverage_data']:.3f}; objects per view "
          f"{o['objects_per_view_samples']:.2f} vs {o['objects_per_view_data']:.2f} (TV {o['count_tv']:.2f}); "
          f"hazy pixels {o['haze_share']:.1%} (fog {o['fog_share']:.1%})")
