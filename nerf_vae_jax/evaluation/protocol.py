"""Novel-view evaluation of NeRF-VAE: the protocol, posterior bounds, test-time refinement.

The protocol, shared by NeRF-VAE and the per-scene NeRF baseline: of each
scene's V views, views [0, 4) are the candidate context views and views
[4, V) are held out. With K context views (K = 1..4) a model sees views
[0, K) and is scored on every held-out view, the same ones for every K, so
the numbers for different K are comparable. The 4 is the protocol's, not a
model's (``config.data.max_context``): any model takes any number of views
through the context mask, and every run is scored on the same held-out views.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nerf_vae_jax import batching, sharding
from nerf_vae_jax.evaluation import view_metrics
from nerf_vae_jax.models import nerf_vae, objectives, posterior, ray_sampling

CONTEXT_CANDIDATES = 4  # views [0, 4) may be context; [4, V) are held out
CONTEXT_COUNTS = (1, 2, 3, 4)
HELD_OUT = slice(CONTEXT_CANDIDATES, None)


@dataclasses.dataclass(frozen=True)
class Settings:
  """How NeRF-VAE is evaluated (hashable: a static argument of the jitted step)."""
  num_samples: int = 8  # posterior samples for the ELBO and IWAE estimates
  num_rays: int = 1024  # held-out pixels per scene for the ELBO and IWAE estimates
  likelihood_scale: float = 0.1
  refine_steps: int = 0  # test-time refinement: Adam steps on the posterior (0: off)
  refine_learning_rate: float = 0.05
  refine_rays: int = 512  # context pixels per step
  chunk: int = 4096  # rays per scene per rendering chunk


def context_batch(scenes: list[dict], num_context: int) -> dict:
  """Scenes -> a batch (``nerf_vae_jax/batching.py``): context views [0, 4) of
  which the first ``num_context`` are real, targets the held-out views."""
  num_views = scenes[0]["images"].shape[0]
  return batching.stack([batching.from_views(s, range(CONTEXT_CANDIDATES), num_context,
                                               range(CONTEXT_CANDIDATES, num_views)) for s in scenes])


def refine_posterior(model, params, batch, q: posterior.Posterior, key, settings: Settings) -> posterior.Posterior:
  """Test-time refinement: Adam on the means and log scales of each scene's
  posterior to raise the ELBO of its context views (iterative amortised inference, started from the encoder's
  guess). Returns the refined posterior."""
  tx = optax.adam(settings.refine_learning_rate)
  free = {"mean": q.mean, "log_scale": jnp.log(q.scale)}

  def posterior_of(f):
    return posterior.Posterior(f["mean"], jnp.exp(f["log_scale"]))

  def neg_elbo(f, k):
    k_z, k_rays = jax.random.split(k)
    rays = ray_sampling.sample_rays(batch["context_images"], batch["context_intrinsics"],
                                    batch["context_cam_to_world"], k_rays, settings.refine_rays, batch["context_mask"])
    s = nerf_vae.sample_posterior(model, params, posterior_of(f), k_z)
    ll, _ = objectives.ray_log_likelihood(model, params, s.z, rays, k, likelihood_scale=settings.likelihood_scale)
    return -jnp.sum((ll["fine"] - s.kl) / rays.pixels)

  def step(carry, k):
    f, opt = carry
    grads = jax.grad(neg_elbo)(f, k)
    updates, opt = tx.update(grads, opt, f)
    return (optax.apply_updates(f, updates), opt), None

  (free, _), _ = jax.lax.scan(step, (free, tx.init(free)), jax.random.split(key, settings.refine_steps))
  return posterior_of(free)


@functools.partial(jax.jit, static_argnums=(0, 4))
def evaluate_batch(model, params, batch, key, settings: Settings):
  """NeRF-VAE on a batch from ``context_batch``.

  Returns rgb [B, T, H, W, 3], depth and acc [B, T, H, W] of the held-out
  views rendered from the posterior mean, and elbo_per_pixel and
  iwae_per_pixel [B] of the held-out views (``settings.num_samples``
  posterior samples, ``settings.num_rays`` random held-out pixels per scene).
  """
  k_refine, k_rays, k_z = jax.random.split(key, 3)
  q = nerf_vae.infer(model, params, batch)
  if settings.refine_steps:
    q = refine_posterior(model, params, batch, q, k_refine, settings)
  _, t, h, w, _ = batch["target_images"].shape
  out = nerf_vae.render_views(model, params, q.mean, batch["target_intrinsics"],
                              batch["target_cam_to_world"], h, w, settings.chunk)
  rays = ray_sampling.target_rays(batch, k_rays, settings.num_rays)
  ll, log_ratio, kl = objectives.posterior_samples(model, params, q, rays, k_z, num_samples=settings.num_samples,
                                                   likelihood_scale=settings.likelihood_scale)
  elbo = jnp.mean(ll - kl, axis=0)
  pixels = t * h * w
  return dict(out, elbo_per_pixel=elbo / pixels, iwae_per_pixel=objectives.iwae(ll, log_ratio) / pixels)


def padded_chunks(items: list, batch_size: int):
  """(start, chunk, padded) over ``items`` in chunks of ``batch_size``: ``padded`` is the chunk with its last
  item repeated up to ``batch_size`` (one compiled shape for every batch); keep the first len(chunk) outputs."""
  for start in range(0, len(items), batch_size):
    chunk = items[start:start + batch_size]
    yield start, chunk, chunk + [chunk[-1]] * (batch_size - len(chunk))


def evaluate(model, params, scenes: list[dict], num_context: int, settings: Settings = Settings(),
             batch_size: int = 8, seed: int = 0):
  """NeRF-VAE from ``num_context`` views on ``scenes``, ``batch_size`` scenes
  at a time (rounded up to a multiple of the device count).

  Returns (per-scene metric dicts, predictions: dict of numpy arrays over
  all scenes, rgb [M, T, H, W, 3] and depth, acc [M, T, H, W]).
  """
  # Scenes are split over all devices (data parallel, as in training).
  mesh = sharding.make_mesh()
  batch_size = -(-batch_size // mesh.size) * mesh.size
  params = jax.device_put(params, sharding.replicated(mesh))
  per_scene, preds = [], []
  for start, chunk, padded in padded_chunks(scenes, batch_size):
    key = jax.random.fold_in(jax.random.PRNGKey(seed), start)
    batch = sharding.global_batch(context_batch(padded, num_context), mesh)
    out = jax.device_get(evaluate_batch(model, params, batch, key, settings))
    for i, scene in enumerate(chunk):
      m = view_metrics.scene_metrics(out["rgb"][i], out["depth"][i], out["acc"][i], scene, num_context, HELD_OUT)
      m.update(elbo_per_pixel=float(out["elbo_per_pixel"][i]), iwae_per_pixel=float(out["iwae_per_pixel"][i]))
      per_scene.append(m)
    preds.append({k: out[k][:len(chunk)] for k in ("rgb", "depth", "acc")})
  return per_scene, {k: np.concatenate([p[k] for p in preds]) for k in preds[0]}


@functools.partial(jax.jit, static_argnums=(0, 4, 5, 6))
def infer_and_render(model, params, context: dict, cameras: tuple, height: int, width: int, chunk: int = 4096):
  """Renders cameras (intrinsics [B, V, 4], cam_to_world [B, V, 4, 4]) from the posterior mean of
  ``context`` (a batch, or its context part): rgb, depth, acc [B, V, H, W, ...]."""
  latent = nerf_vae.infer(model, params, context).mean  # the posterior mean stands for it
  return nerf_vae.render_views(model, params, latent, *cameras, height, width, chunk)
