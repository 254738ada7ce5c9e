"""The batch: one spec of its keys, shapes and dtypes, for training, evaluation and benchmarks.

A batch holds B scenes; each has K context views (the encoder's input; the
real ones are marked by ``context_mask``, padding repeats real views) and T
target views (the views whose pixels the likelihood scores):

  context_images        uint8   [B, K, H, W, 3]
  context_intrinsics    float32 [B, K, 4]        (fx, fy, cx, cy), geometry.py
  context_cam_to_world  float32 [B, K, 4, 4]     OpenGL camera-to-world
  context_mask          bool    [B, K]
  target_images         uint8   [B, T, H, W, 3]
  target_intrinsics     float32 [B, T, 4]
  target_cam_to_world   float32 [B, T, 4, 4]

Rays are not part of it: the model computes them on the device from the
cameras. The input pipeline, initialisation, evaluation and the benchmark
all build batches with the functions here.
"""

from __future__ import annotations

import jax
import numpy as np

from nerf_vae_jax import geometry

CONTEXT_KEYS = ("context_images", "context_intrinsics", "context_cam_to_world", "context_mask")
TARGET_KEYS = ("target_images", "target_intrinsics", "target_cam_to_world")
KEYS = CONTEXT_KEYS + TARGET_KEYS


def shapes(batch_size: int, num_context: int, num_targets: int, height: int, width: int) -> dict:
  """The batch's ``jax.ShapeDtypeStruct``s."""
  out = {}
  for prefix, n in (("context", num_context), ("target", num_targets)):
    out[f"{prefix}_images"] = jax.ShapeDtypeStruct((batch_size, n, height, width, 3), np.uint8)
    out[f"{prefix}_intrinsics"] = jax.ShapeDtypeStruct((batch_size, n, 4), np.float32)
    out[f"{prefix}_cam_to_world"] = jax.ShapeDtypeStruct((batch_size, n, 4, 4), np.float32)
  out["context_mask"] = jax.ShapeDtypeStruct((batch_size, num_context), np.bool_)
  return {k: out[k] for k in KEYS}


def for_config(config, height: int, width: int, batch_size: int = 1) -> dict:
  """The shapes of a training batch of ``config`` (K = max_context, T = num_targets)."""
  return shapes(batch_size, config.data.max_context, config.data.num_targets, height, width)


def example(shape_structs: dict) -> dict:
  """A valid batch of the given shapes (numpy): black images, every context
  view real, cameras 3 units from the origin looking down -z (for
  initialisation, where only shapes matter)."""
  out = {}
  for k, s in shape_structs.items():
    if k.endswith("cam_to_world"):
      out[k] = np.broadcast_to(np.eye(4, dtype=np.float32) + 3.0 * (np.arange(16) == 11).reshape(4, 4),
                               s.shape).copy()
    elif k.endswith("intrinsics"):
      h, w = shape_structs["context_images"].shape[2:4]
      out[k] = np.broadcast_to(np.array([w, h, w / 2, h / 2], np.float32), s.shape).copy()
    else:
      out[k] = np.ones(s.shape, s.dtype) if k == "context_mask" else np.zeros(s.shape, s.dtype)
  return out


def from_views(scene: dict, context, num_real: int, target) -> dict:
  """One scene's element of a batch (no leading B axis).

  Args:
    scene: images [V, H, W, 3], intrinsics [V, 4], cam_to_world [V, 4, 4].
    context: view indices [K]; the first ``num_real`` are real, the rest padding.
    target: view indices [T].
  """
  context, target = np.asarray(context), np.asarray(target)
  out = {"context_mask": np.arange(len(context)) < num_real}
  for prefix, idx in (("context", context), ("target", target)):
    out[f"{prefix}_images"] = scene["images"][idx]
    out[f"{prefix}_intrinsics"] = scene["intrinsics"][idx]
    out[f"{prefix}_cam_to_world"] = scene["cam_to_world"][idx]
  return {k: out[k] for k in KEYS}


def stack(elements: list[dict]) -> dict:
  """Elements of ``from_views`` -> a batch (numpy), with a leading B axis."""
  return {k: np.stack([e[k] for e in elements]) for k in elements[0]}


def context(batch: dict) -> dict:
  """The encoder's part of a batch."""
  return {k: batch[k] for k in CONTEXT_KEYS}


def model_inputs(batch: dict) -> dict:
  """The arrays of the spec, without the extras the pipeline adds (``scene_id``)."""
  return {k: batch[k] for k in KEYS}


def synthetic(spec, data_config, batch_size: int, seed: int = 0) -> dict:
  """A training batch of ``spec``'s shapes (for benchmarks and tests): random pixels, cameras on the
  training shell, ``data_config.max_context`` context and ``num_targets`` target views per scene."""
  rng = np.random.default_rng(seed)
  k, t = data_config.max_context, data_config.num_targets
  intr = geometry.intrinsics_from_fov(spec.fov_degrees, spec.height, spec.width)

  def scene():
    n = k + t
    pos = geometry.on_sphere(3.0, rng.uniform(0, 2 * np.pi, n), np.deg2rad(rng.uniform(15, 60, n)))
    return {"images": rng.integers(0, 256, (n, spec.height, spec.width, 3), dtype=np.uint8),
            "intrinsics": np.tile(intr, (n, 1)), "cam_to_world": geometry.look_at(pos, xp=np).astype(np.float32)}

  return stack([from_views(scene(), range(k), k, range(k, k + t)) for _ in range(batch_size)])
