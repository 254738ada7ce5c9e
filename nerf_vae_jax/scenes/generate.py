"""Scene generation for the dataset builder: sample, render, encode as PNG.

Runs in worker processes (one per core): each renders chunks of consecutive
scene indices. A scene depends only on (spec, split, index), and the renderer
treats each scene alone, so the bytes do not depend on how work is split.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import multiprocessing
import multiprocessing.pool
import os

import numpy as np
from PIL import Image

from nerf_vae_jax.scenes import sampler, specs

CHUNK = 16  # scenes per render call (a fixed size: one compilation)


def png(array: np.ndarray) -> bytes:
  """PNG bytes of a uint8 [H, W, 3] or [H, W], or uint16 [H, W] image."""
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, format="PNG", compress_level=6)
  return buf.getvalue()


def quantise_depth(depth: np.ndarray, spec: specs.SceneSpec) -> np.ndarray:
  """float depth -> uint16 (depth * spec.depth_scale, rounded; 0 stays 0)."""
  return np.round(np.clip(depth, 0.0, spec.max_depth) * spec.depth_scale).astype(np.uint16)


def render_chunk(spec_name: str, split: str, start: int, stop: int) -> list[tuple[int, dict]]:
  """Renders scenes [start, stop) of a split into TFDS examples.

  Returns (index, example) pairs: the example's images are lists of PNG
  bytes, one per view (never arrays: encoding them would need TensorFlow).
  """
  from nerf_vae_jax.scenes import raytracer  # imports JAX: only in workers

  spec = specs.get_spec(spec_name)
  indices = list(range(start, stop))
  scenes = [sampler.sample_scene(spec, split, i) for i in indices]
  padded = scenes + [scenes[-1]] * (CHUNK - len(scenes))
  images, depths, masks = raytracer.render(
      sampler.stack(padded), height=spec.height, width=spec.width,
      supersample=spec.supersample, ambient=spec.ambient)
  images, depths, masks = np.asarray(images), np.asarray(depths), np.asarray(masks)
  out = []
  for b, (index, scene) in enumerate(zip(indices, scenes)):
    valid = scene["valid"]
    out.append((index, {
        "scene_id": index,
        "images": [png(im) for im in images[b]],
        "depths": quantise_depth(depths[b], spec),
        "masks": masks[b],
        "intrinsics": scene["intrinsics"],
        "cam_to_world": scene["cam_to_world"],
        "background": scene["background"],
        "light_direction": scene["light_direction"],
        "objects": {
            "shape": scene["shape"][valid].astype(np.int64),
            "position": scene["position"][valid],
            "size": scene["size"][valid],
            "rotation": scene["rotation"][valid],
            "color": scene["color"][valid],
        },
    }))
  return out


def chunks(num_scenes: int) -> list[tuple[int, int]]:
  """[start, stop) ranges of CHUNK scenes covering 0..num_scenes."""
  return [(s, min(s + CHUNK, num_scenes)) for s in range(0, num_scenes, CHUNK)]


@contextlib.contextmanager
def _environment(**values):
  """Sets environment variables for the duration of the block."""
  saved = {k: os.environ.get(k) for k in values}
  os.environ.update(values)
  try:
    yield
  finally:
    for k, v in saved.items():
      if v is None:
        os.environ.pop(k)
      else:
        os.environ[k] = v


_POOLS: dict[int, multiprocessing.pool.Pool] = {}


def _pool(workers: int):
  """A pool of rendering processes, kept for the next split (starting one
  costs seconds: JAX import and compilation)."""
  if workers not in _POOLS:
    ctx = multiprocessing.get_context("spawn")  # JAX is not fork-safe
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    with _environment(XLA_FLAGS=flags.strip(), JAX_PLATFORMS="cpu"):
      _POOLS[workers] = ctx.Pool(workers)  # the workers inherit this environment
    atexit.register(_POOLS[workers].terminate)
  return _POOLS[workers]


def _render_chunk_args(args):
  return render_chunk(*args)


def generate(spec_name: str, split: str, num_scenes: int, workers: int | None = None):
  """Yields (index, example) for every scene of a split, in index order.

  ``workers`` processes render in parallel (default: one per core; 0 renders
  in this process). Each worker's XLA is limited to one thread, so the
  workers do not fight over the cores.
  """
  jobs = [(spec_name, split, a, b) for a, b in chunks(num_scenes)]
  workers = (os.cpu_count() or 1) if workers is None else workers
  if workers == 0:
    for job in jobs:
      yield from render_chunk(*job)
    return
  for out in _pool(workers).imap(_render_chunk_args, jobs):
    yield from out
