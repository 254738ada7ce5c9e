"""The input pipeline: scenes -> batches of context and target views (grain).

Each JAX process reads its own interleaved shard of the split (scene i goes to
process i % process_count), shuffles it with a seed (a new order each epoch),
picks context and target views per scene with a per-element RNG (a function of
the seed and the element's position, so the stream does not depend on the
number of workers), and batches. Rays are not shipped: the model computes them
on the device from ``intrinsics`` and ``cam_to_world``. The iterator's state
(``get_state``/``set_state``, or ``grain.checkpoint``) resumes at exactly the
next batch.
"""

from __future__ import annotations

import dataclasses
import functools

import grain
from absl import flags
import numpy as np

from nerf_vae_jax.data.source import SceneSource


@dataclasses.dataclass(frozen=True)
class ViewSampling:
  """How many views of each scene go in as context and come out as targets.

  A scene gets between ``min_context`` and ``max_context`` context views
  (uniformly), padded to ``max_context`` and marked by ``context_mask``, and
  ``num_targets`` other views as targets.
  """
  min_context: int = 1
  max_context: int = 4
  num_targets: int = 2


def select_views(scene: dict, rng: np.random.Generator, views: ViewSampling) -> dict:
  """Splits one scene's views into context and targets.

  Returns (K = max_context, T = num_targets):
    context_images uint8 [K, H, W, 3], context_intrinsics float32 [K, 4],
    context_cam_to_world float32 [K, 4, 4], context_mask bool [K] (padding
    repeats real views and is masked out), target_images uint8 [T, H, W, 3],
    target_intrinsics [T, 4], target_cam_to_world [T, 4, 4], scene_id int64.
  """
  num_views = scene["images"].shape[0]
  k, t = views.max_context, views.num_targets
  if k + t > num_views:
    raise ValueError(f"{k} context + {t} target views need {k + t} views per scene; the dataset has {num_views}.")
  order = rng.permutation(num_views)
  n = int(rng.integers(views.min_context, views.max_context + 1))
  context = np.concatenate([order[:n], np.resize(order[:n], k - n)])  # pad with real views
  target = order[k:k + t]
  out = {"scene_id": np.int64(scene["scene_id"]), "context_mask": np.arange(k) < n}
  for prefix, idx in (("context", context), ("target", target)):
    out[f"{prefix}_images"] = scene["images"][idx]
    out[f"{prefix}_intrinsics"] = scene["intrinsics"][idx]
    out[f"{prefix}_cam_to_world"] = scene["cam_to_world"][idx]
  return out


def _select_views(scene, rng, views):
  return select_views(scene, rng, views)


def make_dataset(source: SceneSource, *, batch_size: int, views: ViewSampling, seed: int,
                 train: bool = True, process_index: int = 0, process_count: int = 1) -> grain.MapDataset:
  """The per-process batched dataset.

  Args:
    source: the split to read.
    batch_size: scenes per batch *in this process* (global / process_count).
    train: shuffle, repeat forever and drop incomplete batches; else one pass
      in order (the last batch may be smaller).
  """
  ds = grain.MapDataset.source(source)[process_index::process_count]
  if train:
    ds = ds.shuffle(seed=seed).repeat(None)
  ds = ds.random_map(functools.partial(_select_views, views=views), seed=seed)
  return ds.batch(batch_size, drop_remainder=train)


def make_iterator(dataset: grain.MapDataset, workers: int = 0, buffer: int = 2):
  """A checkpointable iterator over ``dataset``, ``workers`` processes deep."""
  ds = dataset.to_iter_dataset()
  if workers > 0:
    if not flags.FLAGS.is_parsed():  # grain's workers read absl flags
      flags.FLAGS.mark_as_parsed()
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=buffer))
  return iter(ds)
