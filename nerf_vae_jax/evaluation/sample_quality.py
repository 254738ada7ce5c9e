"""Measures of generated scenes against real ones (NumPy, no model).

* ``frechet_distance``: between two sets of features (the probe's,
  ``evaluation/probe_net.py``), as FID does with Inception features:
  |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)).
* ``object_statistics``: per view, the share of opaque pixels (coverage)
  and the number of visible objects, counted as the connected blobs of the
  opaque pixels, in samples (rendered opacity > 0.5) and in the data
  (true masks > 0). Counting blobs in both keeps the comparison fair:
  touching objects merge in both.
* ``haze_share``: pixels neither clear nor opaque (rendered opacity in
  (0.1, 0.9)); the data's masks have none. Most such pixels in a blurred
  render lie on an object's silhouette; ``fog_share`` counts only those with
  no opaque pixel among their 3x3 neighbours: haze in open space, the
  coloured fog of a prior whose samples are not scenes. (The data's own
  partial pixels: at 32px, 4.3% of the pixels of the first 64 test scenes
  have an object coverage in (0.1, 0.9), counted with 8x8 rays per pixel;
  ``haze_regions.partial_coverage``.)
"""

from __future__ import annotations

import numpy as np

OPAQUE = 0.5  # rendered opacity above which a pixel counts as object, as mask IoU counts it
HAZE = (0.1, 0.9)
MIN_BLOB = 2  # pixels: smaller blobs are not counted as objects (specks), in samples and data alike
MAX_COUNT = 6  # object-count histograms: 0 .. MAX_COUNT - 1, and MAX_COUNT or more in the last bin


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
  w, v = np.linalg.eigh(m)
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
  """The Fréchet distance between Gaussians fitted to features a [N, F] and b [M, F].

  tr((S_a S_b)^(1/2)) is computed as tr((S_a^(1/2) S_b S_a^(1/2))^(1/2)), whose
  matrix is symmetric: eigendecompositions only, no general matrix square root.
  """
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  mu_a, mu_b = a.mean(0), b.mean(0)
  cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  root_a = _sqrt_psd(cov_a)
  cross = np.trace(_sqrt_psd(root_a @ cov_b @ root_a))
  return float(max(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * cross, 0.0))


def frechet_spread(a: np.ndarray, b: np.ndarray, groups: int, resamples: int = 50, seed: int = 0) -> float:
  """How much the Fréchet distance of a [N, F] from b moves with the draw of a: the standard deviation over
  ``resamples`` bootstrap resamples of a's ``groups`` equal groups of rows (a's scenes, their views together).

  Another draw of the same prior's samples moves the distance by about this much (RESULTS.md: 94.9-112.4
  over three draws of one prior at 64 scenes per set), so two priors closer than about twice it are not
  told apart by one draw."""
  a = np.asarray(a, np.float64)
  if groups < 2 or len(a) % groups:
    raise ValueError(f"frechet_spread needs at least 2 groups that divide the {len(a)} rows; got {groups}.")
  a = a.reshape((groups, -1) + a.shape[1:])
  rng = np.random.default_rng(seed)
  fds = [frechet_distance(a[rng.integers(0, groups, groups)].reshape(-1, a.shape[-1]), b) for _ in range(resamples)]
  return float(np.std(fds, ddof=1))


def count_blobs(masks: np.ndarray, min_pixels: int = MIN_BLOB) -> np.ndarray:
  """Connected blobs (4-neighbour) of at least ``min_pixels`` pixels in each of masks bool [N, H, W] -> int [N].

  Label propagation, vectorised over all images: every pixel takes the
  smallest label among itself and its neighbours until nothing changes.
  """
  masks = np.asarray(masks, bool)
  n, h, w = masks.shape
  big = n * h * w
  labels = np.where(masks, np.arange(big).reshape(n, h, w), big)
  while True:
    padded = np.pad(labels, ((0, 0), (1, 1), (1, 1)), constant_values=big)
    neighbours = np.minimum.reduce([padded[:, :-2, 1:-1], padded[:, 2:, 1:-1], padded[:, 1:-1, :-2],
                                    padded[:, 1:-1, 2:], labels])
    new = np.where(masks, neighbours, big)
    if np.array_equal(new, labels):
      break
    labels = new
  counts = np.zeros(n, np.int64)
  for i in range(n):
    _, sizes = np.unique(labels[i][masks[i]], return_counts=True)
    counts[i] = int(np.sum(sizes >= min_pixels))
  return counts


def count_histogram(counts: np.ndarray) -> np.ndarray:
  """The distribution [MAX_COUNT + 1] of per-view object counts (the last bin: MAX_COUNT or more)."""
  hist = np.bincount(np.minimum(counts, MAX_COUNT), minlength=MAX_COUNT + 1).astype(np.float64)
  return hist / max(hist.sum(), 1.0)


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
  """Total-variation distance between two distributions on the same bins, in [0, 1]."""
  return float(0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum())


def hazy(acc: np.ndarray) -> np.ndarray:
  """bool, the shape of ``acc``: whether each rendered opacity (or coverage) lies in (0.1, 0.9)."""
  acc = np.asarray(acc)
  return (acc > HAZE[0]) & (acc < HAZE[1])


def haze_share(acc: np.ndarray) -> float:
  """The share of pixels whose rendered opacity lies in (0.1, 0.9)."""
  return float(np.mean(hazy(acc)))


def dilate(mask: np.ndarray) -> np.ndarray:
  """bool [..., H, W]: the pixels with a True pixel in their 3x3 neighbourhood."""
  padded = np.pad(np.asarray(mask, bool), [(0, 0)] * (np.ndim(mask) - 2) + [(1, 1), (1, 1)])
  h, w = np.shape(mask)[-2:]
  out = np.zeros(np.shape(mask), bool)
  for dy in range(3):
    for dx in range(3):
      out |= padded[..., dy:dy + h, dx:dx + w]
  return out


def fog_share(acc: np.ndarray) -> float:
  """The share of pixels that are hazy (``haze_share``) with no opaque pixel (> ``OPAQUE``) in their 3x3
  neighbourhood, of rendered opacities [..., H, W]."""
  return float(np.mean(hazy(acc) & ~dilate(np.asarray(acc) > OPAQUE)))


def object_statistics(opaque: np.ndarray) -> dict:
  """Per-view coverage [N] and object counts [N] of opaque masks bool [N, H, W]."""
  opaque = np.asarray(opaque, bool)
  return {"coverage": opaque.mean(axis=(1, 2)), "counts": count_blobs(opaque)}


def compare_objects(sample_acc: np.ndarray, data_masks: np.ndarray) -> dict:
  """Object statistics of samples (rendered opacity [N, H, W]) against the data (masks [M, H, W], 0 = background).

  Returns a flat dict of floats: mean coverage in each and their ratio, the
  mean object count in each, the total-variation distance between the
  count distributions, the 1-Wasserstein distance between the coverage
  distributions, the shares of hazy pixels and of fog in the samples, and
  both count histograms (lists).
  """
  s = object_statistics(np.asarray(sample_acc) > OPAQUE)
  d = object_statistics(np.asarray(data_masks) > 0)
  hist_s, hist_d = count_histogram(s["counts"]), count_histogram(d["counts"])
  # W1 between two empirical distributions: the mean gap between their quantiles.
  q = np.linspace(0.0, 1.0, 101)
  w1 = float(np.mean(np.abs(np.quantile(s["coverage"], q) - np.quantile(d["coverage"], q))))
  return {
      "coverage_samples": float(s["coverage"].mean()), "coverage_data": float(d["coverage"].mean()),
      "coverage_ratio": float(s["coverage"].mean() / max(d["coverage"].mean(), 1e-12)),
      "coverage_w1": w1,
      "objects_per_view_samples": float(s["counts"].mean()), "objects_per_view_data": float(d["counts"].mean()),
      "count_tv": total_variation(hist_s, hist_d),
      "haze_share": haze_share(sample_acc), "fog_share": fog_share(sample_acc),
      "count_histogram_samples": hist_s.tolist(), "count_histogram_data": hist_d.tolist(),
  }
