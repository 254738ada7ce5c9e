"""Image metrics (PSNR, SSIM) and the per-scene metrics of novel-view evaluation.

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

import functools

import numpy as np

METRICS = ("mse", "psnr", "object_mse", "background_mse", "ssim", "depth_mae", "mask_iou", "elbo_per_pixel", "iwae_per_pixel", "baseline_psnr",
           "baseline_mse")


def psnr(mse, xp=np):
  """PSNR in dB of colours in [0, 1]; ``xp`` is numpy or jax.numpy (inside jit)."""
  return -10.0 * xp.log10(xp.maximum(mse, 1e-10))


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


def squared_error_map(pred_rgb, target) -> np.ndarray:
  """Per-pixel squared error [..., H, W], mean over channels, of the rendering clipped to [0, 1] (float64)."""
  pred = np.clip(np.asarray(pred_rgb, np.float64), 0.0, 1.0)
  return ((pred - target) ** 2).mean(-1)


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
         "baseline_psnr": float(psnr(baseline_mse)), "baseline_mse": baseline_mse}
  if "masks" not in scene:  # a converted dataset without masks: no object metrics
    return out
  fg = scene["masks"][held_out] > 0
  opaque = np.asarray(pred_acc) > 0.5
  inter, union = np.logical_and(opaque, fg).sum(), np.logical_or(opaque, fg).sum()
  err = squared_error_map(pred, target)
  object_err, background_err = err[fg], err[~fg]
  out.update(object_mse=float(object_err.mean()) if object_err.size else float("nan"),
             background_mse=float(background_err.mean()) if background_err.size else float("nan"),
             mask_iou=float(inter / union) if union else 1.0)
  if "depths" in scene:
    depth_err = np.abs(np.asarray(pred_depth) - scene["depths"][held_out])[fg]
    out["depth_mae"] = float(depth_err.mean()) if depth_err.size else float("nan")
  return out


def summarize(per_scene: list[dict]) -> dict:
  """Means over scenes of each metric (NaNs, e.g. depth of an empty scene, skipped)."""
  keys = [k for k in METRICS if k in per_scene[0]]
  return {k: float(np.nanmean([s[k] for s in per_scene])) for k in keys}
