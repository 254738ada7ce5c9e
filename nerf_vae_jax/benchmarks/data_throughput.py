"""Data throughput: scene generation (render + encode) and the input pipeline.

  python -m experiments.benchmark_data --config=64px --num_scenes=1024 --workers=2
  python -m experiments.benchmark_data --config=tiny --loader_only --data_dir=DIR

Generation renders ``num_scenes`` train scenes as the builder does and
serialises them as TFDS records (the bytes that go into ArrayRecord), so the
scenes/s and bytes/scene extrapolate to a full build (the library behind
``experiments.benchmark_data``). The loader part reads a
built split through the training pipeline with 0 and 2 grain workers.
"""

from __future__ import annotations

import time

from nerf_vae_jax.data import build, pipeline, source
from nerf_vae_jax.scenes import shards, specs


def generation(config: str, num_scenes: int, workers: int) -> dict:
  spec = specs.get_spec(config)
  features = build.get_builder(f"shape_scenes/{config}", "/tmp/unused_tfds").info.features
  with shards.render_pool(workers) as pool:
    it = shards.generate(config, "train", num_scenes + shards.CHUNK * max(workers, 1), pool)
    for _ in range(shards.CHUNK * max(workers, 1)):  # warm-up: start and compile the workers
      next(it)
    start, nbytes = time.time(), 0
    for _ in range(num_scenes):
      _, example = next(it)
      nbytes += len(features.serialize_example(example))
    seconds = time.time() - start
  total = sum(spec.splits.values())
  return {"config": config, "workers": workers, "scenes": num_scenes, "scenes_per_s": num_scenes / seconds,
          "bytes_per_scene": nbytes / num_scenes,
          "full_build_scenes": total, "full_build_minutes_est": total / (num_scenes / seconds) / 60,
          "full_build_gb_est": total * nbytes / num_scenes / 1e9}


def loader_scenes_per_s(name: str, data_dir: str, workers: int, batch_size: int = 16, batches: int = 60,
                        views: pipeline.ViewSampling = pipeline.ViewSampling()) -> float:
  """Scenes/s of the training input pipeline on a built train split, after a warm-up that reaches every
  worker (each makes whole batches of its slice, taken in turn)."""
  src = source.SceneSource(name, "train", data_dir, only_views=True)  # decodes only the views it picks
  ds = pipeline.make_dataset(src, batch_size=batch_size, views=views, seed=0)
  it = pipeline.make_iterator(ds, workers=workers)
  for _ in range(max(5, 2 * workers)):
    next(it)
  start = time.time()
  for _ in range(batches):
    next(it)
  return batches * batch_size / (time.time() - start)


def loader(config: str, data_dir: str, workers: int, batch_size: int = 16) -> dict:
  rate = loader_scenes_per_s(f"shape_scenes/{config}", data_dir, workers, batch_size)
  return {"config": config, "workers": workers, "batch_size": batch_size, "loader_scenes_per_s": rate,
          "loader_scenes_per_s_per_worker": rate / max(workers, 1)}
