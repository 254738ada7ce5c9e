"""What one view leaves open: posterior samples of a scene seen from its first view, rendered from the far side.

For each scene, the context is view 0 alone and the "far side" is the
held-out view whose camera is the furthest round from view 0's (the largest
angle about the scene centre). S latents drawn from the posterior are
rendered there; the spread of a pixel is the standard deviation of its
colour across the S renders (mean over channels).

The far view's object pixels are split by whether view 0 sees their surface
point: the point (from the far view's true depth) projects inside view 0 and
lies within ``SEEN_TOLERANCE`` of view 0's own true depth there, so it is not
hidden behind something else. A posterior that knows what it saw and not
what it did not spreads more on the unseen pixels: the diversity ratio
(mean spread on unseen / on seen object pixels) is above 1.

The unseen pixels are of two kinds. Most are the back sides of objects that
view 0 shows: a sphere's or a cube's back follows from its front and colour,
so a good posterior need not be unsure there. The others belong to objects
that view 0 does not show at all (hidden behind another object, or outside
its frame): nothing in the context says what is there, so their spread is
the one a posterior must have. ``hidden_ratio`` (spread on those pixels /
on seen ones) states it apart.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from nerf_vae_jax import batching
from nerf_vae_jax import geometry, visualize
from nerf_vae_jax.evaluation import protocol, sample_metrics
from nerf_vae_jax.models import nerf_vae

SEEN_TOLERANCE = 0.1  # scene units (the scene radius is 1; a 32px pixel spans about 0.07 at the cameras' distance)


def far_view(scene: dict) -> int:
  """The held-out view whose camera is the furthest round the scene centre from view 0's."""
  pos = scene["cam_to_world"][:, :3, 3]
  unit = pos / np.linalg.norm(pos, axis=-1, keepdims=True)
  held_out = np.arange(len(pos))[protocol.HELD_OUT]
  return int(held_out[np.argmin(unit[held_out] @ unit[0])])


def seen_from(scene: dict, target: int, source: int = 0) -> np.ndarray:
  """bool [H, W]: the target view's object pixels whose surface point the source view sees."""
  depth = scene["depths"][target]
  h, w = depth.shape
  o, d = geometry.pixel_rays(scene["intrinsics"][target], scene["cam_to_world"][target], h, w, xp=np)
  points = o + depth[..., None] * d
  with np.errstate(divide="ignore", invalid="ignore"):  # background pixels (depth 0) project anywhere: masked below
    xy, z = geometry.project(points, scene["intrinsics"][source], scene["cam_to_world"][source], xp=np)
  xy = np.nan_to_num(xy, nan=-1.0, posinf=-1.0, neginf=-1.0)
  col, row = np.floor(xy[..., 0]).astype(int), np.floor(xy[..., 1]).astype(int)
  inside = (z > 0) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
  source_depth = scene["depths"][source][np.clip(row, 0, h - 1), np.clip(col, 0, w - 1)]
  distance = np.linalg.norm(points - scene["cam_to_world"][source][:3, 3], axis=-1)
  visible = inside & (source_depth > 0) & (np.abs(distance - source_depth) < SEEN_TOLERANCE)
  return visible & (scene["masks"][target] > 0)


def hidden_from(scene: dict, target: int, source: int = 0) -> np.ndarray:
  """bool [H, W]: the target view's pixels of objects that the source view does not show at all."""
  ids = scene["masks"][target]
  shown = np.unique(scene["masks"][source])
  return (ids > 0) & ~np.isin(ids, shown)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _posterior_latents(model, params, context, num_samples: int, key):
  """S posterior samples [S, B, ...] and the posterior's latent [B, ...]."""
  q = nerf_vae.infer(model, params, context)
  samples = jax.vmap(lambda k: nerf_vae.sample_posterior(model, params, q, k).z)(jax.random.split(key, num_samples))
  return samples, q.mean


def measure(model, params, scenes: list[dict], *, num_samples: int = 8, seed: int = 0, batch_size: int = 8,
            num_pictures: int = 4):
  """The far-side spread of ``scenes`` from 1 view.

  Returns:
    (metrics: spread on seen and unseen object pixels, on objects view 0 does
    not show, and on the backdrop, the ratios, pixel counts; picture: uint8
    rows per scene of context view | true far view | posterior mean | samples
    | spread | seen mask (green: seen, red: not, yellow: an object view 0 does
    not show), for the first ``num_pictures`` scenes).
  """
  spread_seen, spread_unseen, spread_hidden, spread_back, rows = [], [], [], [], []
  key = jax.random.PRNGKey(seed)
  for start, chunk, padded in protocol.padded_chunks(scenes, batch_size):
    far = [far_view(s) for s in padded]
    context = batching.context(protocol.context_batch(padded, 1))
    cam = lambda k: np.stack([s[k][f] for s, f in zip(padded, far)])[:, None]  # [B, 1, ...]
    h, w = padded[0]["images"].shape[1:3]
    latents, mean = jax.device_get(_posterior_latents(model, params, context, num_samples,
                                                      jax.random.fold_in(key, start)))
    # The S x B latents (and the B means) rendered from their scenes' far cameras, as one batch of scenes.
    z = np.concatenate([latents.reshape((-1,) + latents.shape[2:]), mean])
    tile = lambda x: np.concatenate([np.tile(x, (num_samples,) + (1,) * (x.ndim - 1)), x])
    rgb = sample_metrics.render_latents(model, params, z, tile(cam("intrinsics")), tile(cam("cam_to_world")), h,
                                        w)["rgb"]
    samples, mean = rgb[:-len(padded)].reshape((num_samples, len(padded)) + rgb.shape[1:]), rgb[-len(padded):]
    for i, scene in enumerate(chunk):
      rgb = np.clip(samples[:, i, 0], 0.0, 1.0)  # [S, H, W, 3]
      spread = rgb.std(axis=0).mean(-1)  # [H, W]
      obj = scene["masks"][far[i]] > 0
      seen, hidden = seen_from(scene, far[i]), hidden_from(scene, far[i])
      spread_seen.append(spread[seen])
      spread_unseen.append(spread[obj & ~seen])
      spread_hidden.append(spread[hidden])
      spread_back.append(spread[~obj])
      if len(rows) < num_pictures:
        peak = max(float(spread.max()), 1e-6)
        rows.append([scene["images"][0], scene["images"][far[i]], visualize.to_uint8(mean[i, 0]),
                     *[visualize.to_uint8(x) for x in rgb[:4]],
                     visualize.to_uint8(np.repeat((spread / peak)[..., None], 3, -1)),
                     visualize.mask_to_rgb(seen.astype(np.uint8) + obj.astype(np.uint8) + 2 * hidden)])
  cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0)
  average = lambda x: float(x.mean()) if x.size else float("nan")
  seen_px, unseen_px, hidden_px = cat(spread_seen), cat(spread_unseen), cat(spread_hidden)
  metrics = {"num_scenes": len(scenes), "num_samples": num_samples, "spread_seen": average(seen_px),
             "spread_unseen": average(unseen_px), "spread_hidden": average(hidden_px),
             "spread_background": average(cat(spread_back)),
             "pixels_seen": int(seen_px.size), "pixels_unseen": int(unseen_px.size),
             "pixels_hidden": int(hidden_px.size)}
  metrics["diversity_ratio"] = metrics["spread_unseen"] / max(metrics["spread_seen"], 1e-12)
  metrics["hidden_ratio"] = metrics["spread_hidden"] / max(metrics["spread_seen"], 1e-12)
  return metrics, visualize.grid(rows) if rows else None


def hidden_summary(metrics: dict) -> str:
  """The spread on objects view 0 does not show, as a phrase (few scenes have such objects: say so when none do)."""
  if not metrics["pixels_hidden"]:
    return f"no object hidden from view 0 in these {metrics['num_scenes']} scenes"
  return (f"{metrics['spread_hidden']:.3f} on objects it does not show ({metrics['pixels_hidden']} pixels; ratio "
          f"{metrics['hidden_ratio']:.2f})")
