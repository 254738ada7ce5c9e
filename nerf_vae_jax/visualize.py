"""Pictures for people: contact sheets and image grids (NumPy -> PNG)."""

from __future__ import annotations

import numpy as np
from PIL import Image

# Mask colours: background black, then one colour per object.
_PALETTE = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200],
                     [245, 130, 48], [145, 30, 180], [70, 240, 240], [240, 50, 230]], np.uint8)


def depth_to_rgb(depth: np.ndarray, far: float | None = None) -> np.ndarray:
  """float depth [H, W] (0 = background) -> uint8 [H, W, 3]: near bright, far dark, background black."""
  hit = depth > 0
  if far is None:
    far = depth[hit].max() if hit.any() else 1.0
  near = depth[hit].min() if hit.any() else 0.0
  v = np.where(hit, 1.0 - 0.8 * (depth - near) / max(far - near, 1e-6), 0.0)
  return np.repeat((255 * v).astype(np.uint8)[..., None], 3, axis=-1)


def mask_to_rgb(mask: np.ndarray) -> np.ndarray:
  """uint8 instance mask [H, W] -> uint8 [H, W, 3]."""
  return _PALETTE[np.asarray(mask) % len(_PALETTE)]


def grid(rows: list[list[np.ndarray]], pad: int = 2, scale: int = 1) -> np.ndarray:
  """Tiles equally sized uint8 [H, W, 3] images into one picture, rows x columns."""
  h, w, _ = rows[0][0].shape
  ncol = max(len(r) for r in rows)
  out = np.full((len(rows) * (h + pad) + pad, ncol * (w + pad) + pad, 3), 255, np.uint8)
  for i, row in enumerate(rows):
    for j, im in enumerate(row):
      out[pad + i * (h + pad):pad + i * (h + pad) + h, pad + j * (w + pad):pad + j * (w + pad) + w] = im
  return np.kron(out, np.ones((scale, scale, 1), np.uint8)) if scale > 1 else out


def contact_sheet(scenes: list[dict], max_views: int = 8) -> np.ndarray:
  """Scenes x views: for each scene an image row, a depth row and a mask row.

  ``scenes`` are decoded examples (``nerf_vae_jax.data.source.decode``).
  """
  rows = []
  for s in scenes:
    v = min(max_views, s["images"].shape[0])
    rows.append(list(s["images"][:v]))
    rows.append([depth_to_rgb(d) for d in s["depths"][:v]])
    rows.append([mask_to_rgb(m) for m in s["masks"][:v]])
  return grid(rows)


def save_png(path, image: np.ndarray, scale: int = 1) -> None:
  im = Image.fromarray(image)
  if scale > 1:
    im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
  im.save(path)


def error_to_rgb(pred: np.ndarray, target: np.ndarray, gain: float = 4.0) -> np.ndarray:
  """Per-pixel colour error of uint8 [H, W, 3] images -> uint8 [H, W, 3]: black = exact, bright red = large."""
  e = np.abs(pred.astype(np.float32) - target.astype(np.float32)).mean(-1) / 255.0
  v = np.clip(gain * e, 0.0, 1.0)
  return (255 * np.stack([v, v ** 2, v ** 4], -1)).astype(np.uint8)


def blank_like(image: np.ndarray, value: int = 200) -> np.ndarray:
  return np.full_like(image, value)


def save_gif(path, frames, scale: int = 1, duration_ms: int = 80) -> None:
  """uint8 frames [F, H, W, 3] -> a looping GIF."""
  ims = [Image.fromarray(np.asarray(f)) for f in frames]
  if scale > 1:
    ims = [im.resize((im.width * scale, im.height * scale), Image.NEAREST) for im in ims]
  ims[0].save(path, save_all=True, append_images=ims[1:], duration=duration_ms, loop=0)


def to_uint8(rgb) -> np.ndarray:
  """Colours in [0, 1] (any array) -> uint8 (clipped, rounded)."""
  return (np.clip(np.asarray(rgb), 0, 1) * 255).round().astype(np.uint8)
