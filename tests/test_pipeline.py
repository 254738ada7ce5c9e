"""The grain input pipeline: view selection, sharding, determinism, exact resume."""

import numpy as np

from nerf_vae_jax.data import pipeline, source

VIEWS = pipeline.ViewSampling(min_context=1, max_context=3, num_targets=2)


def _source(data_dir, split="train"):
  return source.SceneSource("shape_scenes/tiny", split, data_dir)


def _take(it, n):
  return [next(it) for _ in range(n)]


def test_batches_have_disjoint_context_and_target_views(tiny_data_dir):
  src = _source(tiny_data_dir)
  it = pipeline.make_iterator(pipeline.make_dataset(src, batch_size=4, views=VIEWS, seed=0))
  by_id = {int(src[i]["scene_id"]): i for i in range(len(src))}  # TFDS stores scenes shuffled
  counts = set()
  for batch in _take(it, 10):
    assert batch["context_images"].shape == (4, 3, 32, 32, 3)
    assert batch["target_images"].shape == (4, 2, 32, 32, 3)
    assert batch["context_intrinsics"].shape == (4, 3, 4) and batch["target_cam_to_world"].shape == (4, 2, 4, 4)
    for b in range(4):
      mask = batch["context_mask"][b]
      n = int(mask.sum())
      counts.add(n)
      assert mask[:n].all()  # real views first
      scene = src[by_id[int(batch["scene_id"][b])]]
      cams = [c.tobytes() for c in scene["cam_to_world"]]
      ctx = {cams.index(c.tobytes()) for c in batch["context_cam_to_world"][b][:n]}
      tgt = {cams.index(c.tobytes()) for c in batch["target_cam_to_world"][b]}
      assert len(ctx) == n and len(tgt) == 2 and not ctx & tgt
      k = cams.index(batch["target_cam_to_world"][b][0].tobytes())
      np.testing.assert_array_equal(batch["target_images"][b][0], scene["images"][k])
  assert counts == {1, 2, 3}


def test_same_seed_same_stream_and_exact_resume(tiny_data_dir):
  ds = pipeline.make_dataset(_source(tiny_data_dir), batch_size=4, views=VIEWS, seed=7)
  it = pipeline.make_iterator(ds)
  _take(it, 3)
  state = it.get_state()
  expected = _take(it, 3)
  resumed = pipeline.make_iterator(ds)
  resumed.set_state(state)
  for a, b in zip(expected, _take(resumed, 3)):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  other = pipeline.make_iterator(pipeline.make_dataset(_source(tiny_data_dir), batch_size=4, views=VIEWS, seed=8))
  assert not all((a["scene_id"] == b["scene_id"]).all() for a, b in zip(expected, _take(other, 3)))


def test_worker_processes_give_the_same_stream(tiny_data_dir):
  ds = pipeline.make_dataset(_source(tiny_data_dir), batch_size=4, views=VIEWS, seed=3)
  a = _take(pipeline.make_iterator(ds, workers=0), 4)
  b = _take(pipeline.make_iterator(ds, workers=2), 4)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["scene_id"], y["scene_id"])
    np.testing.assert_array_equal(x["context_images"], y["context_images"])


def test_process_shards_are_disjoint_and_cover_the_split(tiny_data_dir):
  src = _source(tiny_data_dir, "test")
  seen = []
  for p in range(3):
    ds = pipeline.make_dataset(src, batch_size=5, views=VIEWS, seed=0, train=False, process_index=p, process_count=3)
    seen.append(np.concatenate([b["scene_id"] for b in ds]))
  all_ids = np.concatenate(seen)
  assert len(all_ids) == len(src) == len(set(all_ids.tolist()))


def test_epochs_reshuffle(tiny_data_dir):
  src = _source(tiny_data_dir)
  it = pipeline.make_iterator(pipeline.make_dataset(src, batch_size=8, views=VIEWS, seed=1))
  ids = np.concatenate([b["scene_id"] for b in _take(it, 128)])  # two epochs
  first, second = ids[:512], ids[512:]
  assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(512))
  assert (first != second).any()


def test_processes_read_their_rows_of_the_same_global_batches(tiny_data_dir):
  src = _source(tiny_data_dir)
  one = _take(pipeline.make_iterator(pipeline.make_dataset(src, batch_size=8, views=VIEWS, seed=5)), 3)
  parts = [_take(pipeline.make_iterator(pipeline.make_dataset(
      src, batch_size=4, views=VIEWS, seed=5, process_index=p, process_count=2)), 3) for p in range(2)]
  for g, a, b in zip(one, *parts):
    for key in g:
      np.testing.assert_array_equal(np.concatenate([a[key], b[key]]), g[key])


def test_decoding_only_the_picked_views_gives_the_same_batches(tiny_data_dir):
  """Training reads PNG bytes and decodes only the views it picks (6 of 8 here), without depths or masks."""
  lazy = source.SceneSource("shape_scenes/tiny", "train", tiny_data_dir, only_views=True)
  scene = lazy[0]
  assert scene["images"].dtype == object and scene["images"][0].startswith(b"\x89PNG")
  assert "depths" not in scene and "masks" not in scene
  views = pipeline.ViewSampling(min_context=1, max_context=4, num_targets=2)
  batches = [_take(pipeline.make_iterator(pipeline.make_dataset(src, batch_size=4, views=views, seed=3)), 5)
             for src in (_source(tiny_data_dir), lazy)]
  for full, only in zip(*batches):
    assert full.keys() == only.keys()
    for k in full:
      assert full[k].dtype == only[k].dtype, k
      np.testing.assert_array_equal(full[k], only[k], err_msg=k)


def test_the_worker_count_is_picked_from_the_cores_on_accelerators_only():
  import pytest
  from nerf_vae_jax import errors
  assert pipeline.worker_count(-1, "cpu", 2) == 0  # the step needs the CPU's cores
  assert [pipeline.worker_count(-1, "gpu", c) for c in (1, 2, 3, 16, 96)] == [1, 1, 1, 14, 16]
  assert pipeline.worker_count(-1, "tpu", 240) == pipeline.MAX_AUTO_WORKERS
  assert pipeline.worker_count(3, "gpu", 16) == 3 and pipeline.worker_count(0, "gpu", 16) == 0  # as asked
  with pytest.raises(errors.ConfigError, match="-1 \\(auto\\)"):
    pipeline.worker_count(-2, "gpu", 16)


def test_the_loader_measurement_reads_batches_of_the_asked_size(tiny_data_dir):
  from nerf_vae_jax.benchmarks import data_throughput
  r = data_throughput.loader("tiny", tiny_data_dir, workers=0, batch_size=4)
  assert (r["config"], r["workers"], r["batch_size"]) == ("tiny", 0, 4)
  assert r["loader_scenes_per_s"] > 0 and r["loader_scenes_per_s_per_worker"] == r["loader_scenes_per_s"]
