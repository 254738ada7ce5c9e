"""Where rendered haze lies, and how much partial coverage the data itself has.

A pixel is hazy when its rendered opacity lies in (0.1, 0.9)
(``sample_quality.HAZE``). Against the true masks the held-out pixels fall in
four regions: the object interior (object pixels whose 3x3 neighbourhood is
all object), the inner and the outer edge band (object, or background,
pixels next to the other kind) and the far backdrop (the rest). Haze in the
two bands is a blurred silhouette; haze in the far backdrop is fog, or the
blurred edge of an object rendered where none is.

A renderer that integrated every pixel's area exactly would be hazy too:
wherever an object's silhouette crosses a pixel, its opacity is the share of
the pixel the object covers. ``partial_coverage`` counts those pixels in the
data, from ``rays_per_side``^2 rays per pixel: the haze that a 32px model
which rendered every pixel's true coverage would show.
"""

from __future__ import annotations

import numpy as np

from nerf_vae_jax.evaluation import sample_quality
from nerf_vae_jax.scenes import sampler, specs

REGIONS = ("object_interior", "inner_edge", "outer_edge", "far_backdrop")


def regions(acc: np.ndarray, masks: np.ndarray) -> dict:
  """The haze of rendered opacities acc [..., H, W] by region of the true masks [..., H, W] (0: background).

  Returns {region: {"pixels": share of all pixels, "hazy": share of the region's pixels that are hazy,
  "hazy_of_all": share of all pixels that are hazy and in the region}} (shares of 0 where a region is empty).
  """
  fg = np.asarray(masks) > 0
  near_fg, near_bg = sample_quality.dilate(fg), sample_quality.dilate(~fg)
  hazy = sample_quality.hazy(acc)
  parts = {"object_interior": fg & ~near_bg, "inner_edge": fg & near_bg, "outer_edge": ~fg & near_fg,
           "far_backdrop": ~near_fg}
  return {name: {"pixels": float(r.mean()), "hazy": float(hazy[r].mean()) if r.any() else 0.0,
                 "hazy_of_all": float((hazy & r).mean())} for name, r in parts.items()}


def partial_coverage(spec_name: str, split: str, num_scenes: int, rays_per_side: int = 8) -> float:
  """The share of the data's pixels (every view of the first ``num_scenes`` scenes of a ``shape_scenes``
  config) whose object coverage, from rays_per_side x rays_per_side rays per pixel, lies in (0.1, 0.9)."""
  from nerf_vae_jax.scenes import raytracer  # imports JAX: only when asked

  spec, f = specs.get_spec(spec_name), rays_per_side
  scenes = sampler.stack([sampler.sample_scene(spec, split, i) for i in range(num_scenes)])
  scenes["intrinsics"] = scenes["intrinsics"] * f  # (fx, fy, cx, cy) in pixels of an f-times finer image
  t, _ = raytracer.primary_hits(scenes, height=spec.height * f, width=spec.width * f)
  hit = np.isfinite(np.asarray(t))
  coverage = hit.reshape(hit.shape[:-2] + (spec.height, f, spec.width, f)).mean(axis=(-3, -1))
  return float(np.mean(sample_quality.hazy(coverage)))
