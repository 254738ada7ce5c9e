"""The per-scene metrics of novel-view evaluation (image metrics: ``nerf_vae_jax/image_metrics.py``).

Images are colours in [0, 1]. Metrics per scene, then averaged over scenes:
  mse, psnr (of the scene's mse), object_mse (on the ground truth's
  foreground pixels: what the mean-colour baseline cannot get),
  background_mse (on the other pixels: the backdrop's colour, and any haze
  or blur spilling over it), ssim (Gaussian window 11, sigma 1.5, per
  view and channel, as in Wang et al. 2004), depth_mae (on the ground truth's
  foreground pixels), mask_iou (rendered opacity > 0.5 against the ground
  truth's foreground), baseline_mse and baseline_psnr (every pixel painted with
  the mean colour of the context views), and for NeRF-VAE elbo_per_pixel and
  iwae_per_pixel (nats per held-out pixel, ``protocol.evaluate_batch``).
"""

from __future__ import annotations

import numpy as np

from nerf_vae_jax.evaluation import sample_quality
from nerf_vae_jax.image_metrics import psnr, squared_error_map, ssim

METRICS = ("mse", "psnr", "object_mse", "background_mse", "ssim", "depth_mae", "mask_iou", "hazy", "fog",
           "hazy_objects", "hazy_background", "elbo_per_pixel", "iwae_per_pixel", "baseline_psnr", "baseline_mse")


def scene_metrics(pred_rgb, pred_depth, pred_acc, scene: dict, num_context: int, held_out: slice) -> dict:
  """Metrics of one scene's rendered views [T, H, W, ...] against the truth.

  ``held_out`` selects the views that were rendered; the mean-colour baseline
  uses views [0, num_context).
  """
  target = scene["images"][held_out] / 255.0
  pred = np.clip(np.asarray(pred_rgb, np.float64), 0.0, 1.0)
  mse = float(np.mean((pred - target) ** 2))
  mean_colour = scene["images"][:num_context].reshape(-1, 3).mean(0) / 255.0
  baseline_mse = float(np.mean((mean_colour - target) ** 2))
  out = {"mse": mse, "psnr": float(psnr(mse)), "ssim": float(np.mean(ssim(pred, target))),
         "baseline_psnr": float(psnr(baseline_mse)), "baseline_mse": baseline_mse,
         # semi-transparent pixels, and those not on a silhouette, as prior samples are scored
         "hazy": sample_quality.haze_share(pred_acc), "fog": sample_quality.fog_share(pred_acc)}
  if "masks" not in scene:  # a converted dataset without masks: no object metrics
    return out
  fg, acc = scene["masks"][held_out] > 0, np.asarray(pred_acc)
  opaque = acc > 0.5
  inter, union = np.logical_and(opaque, fg).sum(), np.logical_or(opaque, fg).sum()
  err = squared_error_map(pred, target)
  object_err, background_err = err[fg], err[~fg]
  out.update(object_mse=float(object_err.mean()) if object_err.size else float("nan"),
             background_mse=float(background_err.mean()) if background_err.size else float("nan"),
             mask_iou=float(inter / union) if union else 1.0,
             hazy_objects=sample_quality.haze_share(acc[fg]) if fg.any() else float("nan"),
             hazy_background=sample_quality.haze_share(acc[~fg]) if (~fg).any() else float("nan"))
  if "depths" in scene:
    depth_err = np.abs(np.asarray(pred_depth) - scene["depths"][held_out])[fg]
    out["depth_mae"] = float(depth_err.mean()) if depth_err.size else float("nan")
  return out


def summarize(per_scene: list[dict]) -> dict:
  """Means over scenes of each metric (NaNs, e.g. depth of an empty scene, skipped)."""
  keys = [k for k in METRICS if k in per_scene[0]]
  return {k: float(np.nanmean([s[k] for s in per_scene])) for k in keys}
