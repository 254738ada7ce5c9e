"""The input pipeline: scenes -> batches of context and target views (grain).

The split is shuffled with a seed (a new order each epoch); context and target
views are picked per scene with a per-element RNG (a function of the seed and
the element's position, so the stream does not depend on the number of
workers or processes); each JAX process reads only its own rows of every
global batch. Rays are not shipped: the model computes them
on the device from ``intrinsics`` and ``cam_to_world``. The iterator's state
(``get_state``/``set_state``, or ``grain.checkpoint``) resumes at exactly the
next batch.
"""

from __future__ import annotations

import dataclasses
import functools

import grain
import numpy as np
from absl import flags

from nerf_vae_jax import batching
from nerf_vae_jax import errors
from nerf_vae_jax.data import source


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

  Returns one element of a batch (``nerf_vae_jax/batching.py``; K =
  max_context, T = num_targets; padding repeats real views and is masked
  out) and its scene_id (int64).
  """
  num_views = scene["images"].shape[0]
  k, t = views.max_context, views.num_targets
  if k + t > num_views:
    raise errors.ConfigError(f"{k} context + {t} target views need {k + t} views per scene; the dataset has {num_views}.")
  order = rng.permutation(num_views)
  n = int(rng.integers(views.min_context, views.max_context + 1))
  context = np.concatenate([order[:n], np.resize(order[:n], k - n)])  # pad with real views
  target = order[k:k + t]
  if scene["images"].dtype == object:  # PNG bytes (SceneSource(only_views=True)): decode the picked views only
    used = np.unique(np.concatenate([context, target]))
    scene = dict(scene, images=source.decode_pngs(scene["images"], used), intrinsics=scene["intrinsics"][used],
                 cam_to_world=scene["cam_to_world"][used])
    context, target = np.searchsorted(used, context), np.searchsorted(used, target)
  return dict(batching.from_views(scene, context, n, target), scene_id=np.int64(scene["scene_id"]))


class _ProcessRows(grain.MapDataset):
  """This process's rows of each global batch: element j is global element
  (j // per) * global + process_index * per + j % per."""

  def __init__(self, parent: grain.MapDataset, per_process: int, process_index: int, process_count: int):
    super().__init__(parent)
    self._per, self._index, self._count = per_process, process_index, process_count

  def __len__(self) -> int:
    return len(self._parent) // self._count

  def __getitem__(self, j):
    if isinstance(j, slice):
      return self.slice(j)
    row, col = divmod(j, self._per)
    return self._parent[(row * self._count + self._index) * self._per + col]

  def __str__(self) -> str:
    return f"ProcessRows(process {self._index} of {self._count})"


def make_dataset(scenes: source.SceneSource, *, batch_size: int, views: ViewSampling, seed: int,
                 train: bool = True, process_index: int = 0, process_count: int = 1) -> grain.MapDataset:
  """The per-process batched dataset.

  Training: the split is shuffled (a new order each epoch) and repeated
  forever, views are picked per element of that *global* stream, and each
  process takes its rows of every global batch: the global batches are the
  same whatever the number of processes. Evaluation (``train=False``): one
  pass in order, scene i read by process i % process_count; the last batch
  may be smaller.

  Args:
    scenes: the split to read.
    batch_size: scenes per batch *in this process* (global / process_count).
  """
  ds = grain.MapDataset.source(scenes)
  select = functools.partial(select_views, views=views)
  if not train:
    return ds[process_index::process_count].random_map(select, seed=seed).batch(batch_size)
  ds = ds.shuffle(seed=seed).repeat(None).random_map(select, seed=seed)
  if process_count > 1:
    ds = _ProcessRows(ds, batch_size, process_index, process_count)
  return ds.batch(batch_size, drop_remainder=True)


MAX_AUTO_WORKERS = 16


def worker_count(requested: int, platform: str, cores: int | None) -> int:
  """grain workers for ``config.data.workers``: itself if >= 0; for -1 (auto), none on the CPU, where the
  step needs the cores, and elsewhere all cores but two (the training process and its host work), at most 16."""
  if requested >= 0:
    return requested
  if requested != -1:
    raise errors.ConfigError(f"config.data.workers={requested}: use -1 (auto), 0 (the main process) or a count.")
  return 0 if platform == "cpu" else max(1, min((cores or 1) - 2, MAX_AUTO_WORKERS))


def make_iterator(dataset: grain.MapDataset, workers: int = 0, buffer: int = 2):
  """A checkpointable iterator over ``dataset``, ``workers`` processes deep."""
  ds = dataset.to_iter_dataset()
  if workers > 0:
    if not flags.FLAGS.is_parsed():
      raise errors.UserError(
          "grain's worker processes read absl flags, which are not parsed in this process: run from an absl "
          "app (the experiments/ commands are), call absl.flags.FLAGS.mark_as_parsed() first, or use "
          "config.data.workers=0.")
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=buffer))
  return iter(ds)
