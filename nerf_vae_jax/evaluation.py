"""Novel-view evaluation: metrics, posterior bounds, test-time refinement, orbits.

The protocol, shared by NeRF-VAE and the per-scene NeRF baseline: of each
scene's V views, views [0, 4) are the candidate context views and views
[4, V) are held out. With K context views (K = 1..4) a model sees views
[0, K) and is scored on every held-out view, the same ones for every K, so
the numbers for different K are comparable.

Metrics per scene (then averaged over scenes), images in [0, 1]:
  mse, psnr (of the scene's mse), ssim (Gaussian window 11, sigma 1.5, per
  view and channel, as in Wang et al. 2004), depth_mae (on the ground truth's
  foreground pixels), mask_iou (rendered opacity > 0.5 against the ground
  truth's foreground), baseline_mse and baseline_psnr (every pixel painted with
  the mean colour of the context views), and for NeRF-VAE elbo_per_pixel and iwae_per_pixel
  (nats per held-out pixel; estimated from ``num_rays`` random held-out pixels
  per scene, rescaled to whole images as in training).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nerf_vae_jax import geometry, sharding
from nerf_vae_jax.models import nerf_vae, posterior

MAX_CONTEXT = 4  # views [0, 4) may be context; [4, V) are held out
CONTEXT_COUNTS = (1, 2, 3, 4)
METRICS = ("mse", "psnr", "ssim", "depth_mae", "mask_iou", "elbo_per_pixel", "iwae_per_pixel", "baseline_psnr",
           "baseline_mse")


# ---------------------------------------------------------------- metrics (NumPy)

def psnr(mse) -> float:
  """PSNR in dB of colours in [0, 1]."""
  return float(-10.0 * np.log10(max(float(mse), 1e-10)))


def _gaussian_filter_valid(x: np.ndarray, size: int, sigma: float) -> np.ndarray:
  """Separable Gaussian filter over the last two axes of x [..., H, W], 'valid' borders."""
  g = np.exp(-0.5 * ((np.arange(size) - (size - 1) / 2) / sigma) ** 2)
  g /= g.sum()
  x = np.lib.stride_tricks.sliding_window_view(x, size, axis=-2) @ g  # [..., H', W]
  return np.lib.stride_tricks.sliding_window_view(x, size, axis=-1) @ g  # [..., H', W']


def ssim(a: np.ndarray, b: np.ndarray, size: int = 11, sigma: float = 1.5, k1: float = 0.01,
         k2: float = 0.03) -> np.ndarray:
  """Mean SSIM of images [..., H, W, C] in [0, 1] -> [...] (Wang et al. 2004)."""
  a = np.moveaxis(np.asarray(a, np.float64), -1, -3)  # [..., C, H, W]
  b = np.moveaxis(np.asarray(b, np.float64), -1, -3)
  f = functools.partial(_gaussian_filter_valid, size=size, sigma=sigma)
  mu_a, mu_b = f(a), f(b)
  var_a, var_b, cov = f(a * a) - mu_a ** 2, f(b * b) - mu_b ** 2, f(a * b) - mu_a * mu_b
  c1, c2 = k1 ** 2, k2 ** 2
  s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
  return s.mean(axis=(-3, -2, -1))


def scene_metrics(pred_rgb, pred_depth, pred_acc, scene: dict, num_context: int,
                  held_out: slice = slice(MAX_CONTEXT, None)) -> dict:
  """Metrics of one scene's rendered held-out views [T, H, W, ...] against the truth.

  ``held_out`` selects the views that were rendered; the mean-colour baseline
  uses views [0, num_context).
  """
  target = scene["images"][held_out] / 255.0
  pred = np.clip(np.asarray(pred_rgb, np.float64), 0.0, 1.0)
  mse = float(np.mean((pred - target) ** 2))
  fg = scene["masks"][held_out] > 0
  depth_err = np.abs(np.asarray(pred_depth) - scene["depths"][held_out])[fg]
  opaque = np.asarray(pred_acc) > 0.5
  inter, union = np.logical_and(opaque, fg).sum(), np.logical_or(opaque, fg).sum()
  mean_colour = scene["images"][:num_context].reshape(-1, 3).mean(0) / 255.0
  baseline_mse = float(np.mean((mean_colour - target) ** 2))
  return {"mse": mse, "psnr": psnr(mse), "ssim": float(np.mean(ssim(pred, target))),
          "depth_mae": float(depth_err.mean()) if depth_err.size else float("nan"),
          "mask_iou": float(inter / union) if union else 1.0,
          "baseline_psnr": psnr(baseline_mse), "baseline_mse": baseline_mse}


def summarize(per_scene: list[dict]) -> dict:
  """Means over scenes of each metric (NaNs, e.g. depth of an empty scene, skipped)."""
  keys = [k for k in METRICS if k in per_scene[0]]
  return {k: float(np.nanmean([s[k] for s in per_scene])) for k in keys}


# ---------------------------------------------------------------- NeRF-VAE

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
  """Scenes -> the model's inputs: context views [B, 4, ...] of which the
  first ``num_context`` are real (``context_mask``), held-out targets [B, T, ...]."""
  stack = lambda key, sl: np.stack([s[key][sl] for s in scenes])
  c, t = slice(0, MAX_CONTEXT), slice(MAX_CONTEXT, None)
  mask = np.zeros((len(scenes), MAX_CONTEXT), bool)
  mask[:, :num_context] = True
  return {"context_images": stack("images", c), "context_intrinsics": stack("intrinsics", c),
          "context_cam_to_world": stack("cam_to_world", c), "context_mask": mask,
          "target_images": stack("images", t), "target_intrinsics": stack("intrinsics", t),
          "target_cam_to_world": stack("cam_to_world", t)}


def _context_rays(batch, key, num_rays: int):
  """num_rays random pixels of each scene's real context views: o, d, colours [B, R, 3]."""
  images = batch["context_images"]
  b, k, h, w, _ = images.shape
  o, d = geometry.pixel_rays(batch["context_intrinsics"], batch["context_cam_to_world"], h, w)
  real = jnp.sum(batch["context_mask"], axis=1, keepdims=True)  # the real views come first
  kv, kp = jax.random.split(key)
  view = jax.random.randint(kv, (b, num_rays), 0, real)
  idx = (view * h * w + jax.random.randint(kp, (b, num_rays), 0, h * w))[..., None]
  pick = lambda x: jnp.take_along_axis(x.reshape(b, k * h * w, -1), idx, axis=1)
  return pick(o), pick(d), pick(images).astype(jnp.float32) / 255.0, real[:, 0] * h * w


def refine_posterior(model, params, batch, mean, scale, key, settings: Settings):
  """Test-time refinement: Adam on (mean, log scale) of each scene's posterior
  to raise the ELBO of its context views (iterative amortised inference,
  started from the encoder's guess). Returns (mean, scale), refined."""
  tx = optax.adam(settings.refine_learning_rate)

  def neg_elbo(q, k):
    m, log_s = q
    s = jnp.exp(log_s)
    k_z, k_rays = jax.random.split(k)
    o, d, x, pixels = _context_rays(batch, k_rays, settings.refine_rays)
    z = nerf_vae.sample_latent(k_z, m, s)
    out = model.apply(params, z, o, d, k, True, method=nerf_vae.NeRFVAE.render_rays)
    ll = nerf_vae.gaussian_log_likelihood(x, out["fine"]["rgb"], settings.likelihood_scale)
    elbo = ll * pixels / settings.refine_rays - posterior.kl_to_standard_normal(m, s)
    return -jnp.sum(elbo / pixels)

  def step(carry, k):
    q, opt = carry
    grads = jax.grad(neg_elbo)(q, k)
    updates, opt = tx.update(grads, opt, q)
    return (optax.apply_updates(q, updates), opt), None

  q = (mean, jnp.log(scale))
  (q, _), _ = jax.lax.scan(step, (q, tx.init(q)), jax.random.split(key, settings.refine_steps))
  return q[0], jnp.exp(q[1])


@functools.partial(jax.jit, static_argnums=(0, 4))
def evaluate_batch(model, params, batch, key, settings: Settings):
  """NeRF-VAE on a batch from ``context_batch``.

  Returns rgb [B, T, H, W, 3], depth and acc [B, T, H, W] of the held-out
  views rendered from the posterior mean, and elbo_per_pixel and
  iwae_per_pixel [B] of the held-out views.
  """
  k_refine, k_rays, k_z = jax.random.split(key, 3)
  mean, scale = model.apply(params, batch["context_images"], batch["context_intrinsics"],
                            batch["context_cam_to_world"], batch["context_mask"], method=nerf_vae.NeRFVAE.infer)
  if settings.refine_steps:
    mean, scale = refine_posterior(model, params, batch, mean, scale, k_refine, settings)
  _, t, h, w, _ = batch["target_images"].shape
  out = nerf_vae.render_views(model, params, mean, batch["target_intrinsics"], batch["target_cam_to_world"], h, w,
                              settings.chunk)
  o, d, x = nerf_vae.target_rays(batch, k_rays, settings.num_rays)
  pixels = t * h * w

  def sample(k):  # log p(x | z) for the whole held-out images, and log p(z) - log q(z)
    z = nerf_vae.sample_latent(k, mean, scale)
    rgb = model.apply(params, z, o, d, k, False, method=nerf_vae.NeRFVAE.render_rays)["fine"]["rgb"]
    ll = nerf_vae.gaussian_log_likelihood(x, rgb, settings.likelihood_scale) * (pixels / settings.num_rays)
    return ll, posterior.log_normal(z, jnp.zeros_like(z), jnp.ones_like(z)) - posterior.log_normal(z, mean, scale)

  ll, log_ratio = jax.lax.map(sample, jax.random.split(k_z, settings.num_samples))  # [S, B]
  elbo = jnp.mean(ll, axis=0) - posterior.kl_to_standard_normal(mean, scale)
  iwae = jax.nn.logsumexp(ll + log_ratio, axis=0) - math.log(settings.num_samples)
  return dict(out, elbo_per_pixel=elbo / pixels, iwae_per_pixel=iwae / pixels)


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
  for start in range(0, len(scenes), batch_size):
    chunk = scenes[start:start + batch_size]
    padded = chunk + [chunk[-1]] * (batch_size - len(chunk))  # one compiled shape for every batch
    key = jax.random.fold_in(jax.random.PRNGKey(seed), start)
    batch = jax.device_put(context_batch(padded, num_context), sharding.batch_sharding(mesh))
    out = jax.device_get(evaluate_batch(model, params, batch, key, settings))
    for i, scene in enumerate(chunk):
      m = scene_metrics(out["rgb"][i], out["depth"][i], out["acc"][i], scene, num_context)
      m.update(elbo_per_pixel=float(out["elbo_per_pixel"][i]), iwae_per_pixel=float(out["iwae_per_pixel"][i]))
      per_scene.append(m)
    preds.append({k: out[k][:len(chunk)] for k in ("rgb", "depth", "acc")})
  return per_scene, {k: np.concatenate([p[k] for p in preds]) for k in preds[0]}


@functools.partial(jax.jit, static_argnums=(0, 4, 5, 6))
def infer_and_render(model, params, context: dict, cameras: tuple, height: int, width: int, chunk: int = 4096):
  """Renders cameras (intrinsics [B, V, 4], cam_to_world [B, V, 4, 4]) from the posterior mean of
  ``context`` (a dict with the context_* entries of ``context_batch``): rgb, depth, acc [B, V, H, W, ...]."""
  mean, _ = model.apply(params, context["context_images"], context["context_intrinsics"],
                        context["context_cam_to_world"], context["context_mask"], method=nerf_vae.NeRFVAE.infer)
  return nerf_vae.render_views(model, params, mean, *cameras, height, width, chunk)


def orbit_cameras(spec, num: int, distance: float = 3.0, elevation_degrees: float = 30.0):
  """(intrinsics [num, 4], cam_to_world [num, 4, 4]) circling the scene."""
  a = np.linspace(0, 2 * np.pi, num, endpoint=False)
  e = np.deg2rad(elevation_degrees)
  pos = distance * np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.full(num, np.sin(e))], -1)
  c2w = geometry.look_at(pos, xp=np).astype(np.float32)
  intr = np.tile(geometry.intrinsics_from_fov(spec.fov_degrees, spec.height, spec.width), (num, 1))
  return intr.astype(np.float32), c2w


def to_uint8(rgb) -> np.ndarray:
  return (np.clip(np.asarray(rgb), 0, 1) * 255).round().astype(np.uint8)


def render_orbit(model, params, scene: dict, num_context: int, spec, num_frames: int = 24) -> np.ndarray:
  """uint8 [F, H, W, 3] frames of the scene inferred from its first ``num_context`` views."""
  intr, c2w = orbit_cameras(spec, num_frames)
  context = context_batch([scene], num_context)
  out = infer_and_render(model, params, context, (intr[None], c2w[None]), spec.height, spec.width)
  return to_uint8(out["rgb"][0])
