"""Where a model's error over the backdrop comes from: its background colour against haze or blur."""

from __future__ import annotations

import functools

import jax
import numpy as np

from nerf_vae_jax import image_metrics
from nerf_vae_jax.evaluation import protocol
from nerf_vae_jax.models import nerf_vae


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _render_and_background(model, params, batch: dict, height: int, width: int):
  """``protocol.infer_and_render`` of the target cameras, plus the background colour [B, 3], from one inference."""
  latent = nerf_vae.infer(model, params, batch).mean
  out = nerf_vae.render_views(model, params, latent, batch["target_intrinsics"], batch["target_cam_to_world"],
                              height, width)
  return dict(out, background=model.apply(params, latent, method=nerf_vae.NeRFVAE.background_colour))


def breakdown(model, params, scenes: list[dict], num_context: int, batch_size: int = 8) -> list[dict]:
  """Where a model's error over the backdrop comes from, per scene (scenes need masks).

  From ``num_context`` views, on the held-out views, from the posterior mean:
  background_mse (on the true background pixels, as ``view_metrics.scene_metrics``),
  colour_error (squared error, mean over channels, of the model's background
  colour against the true backdrop's: the median of the true background
  pixels) and background_opacity (mean rendered opacity there: haze, or the
  objects' blur).
  """
  out = []
  for start in range(0, len(scenes), batch_size):
    chunk = scenes[start:start + batch_size]
    batch = protocol.context_batch(chunk, num_context)
    _, _, h, w, _ = batch["target_images"].shape
    pred = jax.device_get(_render_and_background(model, params, batch, h, w))
    for i, scene in enumerate(chunk):
      truth = scene["images"][protocol.HELD_OUT] / 255.0
      back = scene["masks"][protocol.HELD_OUT] == 0
      err = image_metrics.squared_error_map(pred["rgb"][i], truth)
      out.append({"background_mse": float(err[back].mean()),
                  "colour_error": float(np.mean((pred["background"][i] - np.median(truth[back], axis=0)) ** 2)),
                  "background_opacity": float(np.asarray(pred["acc"][i])[back].mean())})
  return out
