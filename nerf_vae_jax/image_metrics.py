"""Image metrics of colours in [0, 1]: PSNR, SSIM and the per-pixel squared error.

NumPy only (``psnr`` also takes ``jax.numpy``) and no project imports, so that the model, the training
step, the baselines and the evaluation can all use them.
"""

from __future__ import annotations

import functools

import numpy as np


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
