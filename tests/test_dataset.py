"""The TFDS dataset: build without TensorFlow, read back, and fail clearly on bad input."""

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from nerf_vae_jax import errors
from nerf_vae_jax.data import build, source
from nerf_vae_jax.scenes import raytracer, sampler, specs

PY = sys.executable


def test_reads_back_in_a_fresh_process_without_tensorflow(tiny_data_dir):
  code = (
      "import sys, tensorflow_datasets as tfds\n"
      f"src = tfds.data_source('shape_scenes/tiny', data_dir={tiny_data_dir!r})\n"
      "ex = src['train'][0]\n"
      "print(len(src['train']), len(src['test']), len(src['test_ood']), len(ex['images']), ex['depths'].shape,"
      " 'tensorflow' in sys.modules)\n")
  out = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True).stdout.split()
  assert out == ["512", "64", "64", "8", "(8,", "32,", "32)", "False"]


def test_large_splits_are_written_shard_by_shard_in_scene_order(tmp_path, monkeypatch):
  """The 64px train split is 4.7 GB. TFDS's shuffler would spill anything over
  1 GB to temporary files through TensorFlow (not installed); shard by shard,
  nothing is spilled: with the spill threshold at 0 bytes the build still works."""
  import tensorflow_datasets.core.shuffle as tfds_shuffle
  from nerf_vae_jax.scenes import shards
  monkeypatch.setattr(tfds_shuffle, "MAX_MEM_BUFFER_SIZE", 0)
  monkeypatch.setattr(shards, "SHARD_SIZE", 200)
  build.build("shape_scenes/tiny", str(tmp_path), workers=2)
  folder = build.built_dir("shape_scenes/tiny", str(tmp_path))
  assert len(list(folder.glob("shape_scenes-train.array_record-*-of-00003"))) == 3
  src = source.SceneSource("shape_scenes/tiny", "train", str(tmp_path))
  assert len(src) == 512
  for i in (0, 199, 200, 399, 400, 511):  # both sides of each shard boundary
    assert int(src[i]["scene_id"]) == i


def test_decoded_features_match_the_spec_and_the_renderer(tiny_data_dir):
  spec = specs.get_spec("tiny")
  src = source.SceneSource("shape_scenes/tiny", "test", tiny_data_dir)
  assert len(src) == 64
  ex = src[5]
  v, h, w = spec.num_views, spec.height, spec.width
  assert ex["images"].shape == (v, h, w, 3) and ex["images"].dtype == np.uint8
  assert ex["depths"].shape == (v, h, w) and ex["depths"].dtype == np.float32
  assert ex["masks"].shape == (v, h, w) and ex["masks"].dtype == np.uint8
  assert ex["intrinsics"].shape == (v, 4) and ex["cam_to_world"].shape == (v, 4, 4)
  m = len(ex["objects"]["shape"])
  assert ex["objects"]["position"].shape == (m, 3) and ex["objects"]["size"].shape == (m,)
  assert ex["masks"].max() <= m
  # The stored scene is the sampled scene, and the stored depth is the
  # rendered depth to within the quantisation (< 1e-3 of the scene radius).
  scene = sampler.sample_scene(spec, "test", int(ex["scene_id"]))
  np.testing.assert_array_equal(ex["cam_to_world"], scene["cam_to_world"])
  np.testing.assert_array_equal(ex["objects"]["position"], scene["position"][scene["valid"]])
  _, depth, mask = raytracer.render(sampler.stack([scene]), height=h, width=w,
                                    supersample=spec.supersample, ambient=spec.ambient)
  np.testing.assert_array_equal(ex["masks"], np.asarray(mask[0]))
  assert np.abs(ex["depths"] - np.asarray(depth[0])).max() < 1e-3 * spec.scene_radius


def test_unknown_config_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match="Unknown shape_scenes config 'huge'.*tiny, 32px, 64px, 64px_mini, dense"):
    build.build("shape_scenes/huge", str(tmp_path))
  r = subprocess.run([PY, "-m", "experiments.build", "shape_scenes/huge", f"--data_dir={tmp_path}"],
                     capture_output=True, text=True)
  assert r.returncode == 1 and "known configs: tiny, 32px, 64px, 64px_mini, dense" in r.stderr
  assert "Traceback" not in r.stderr  # the project's own error: one line


def test_unwritable_data_dir_is_a_clear_error(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  with pytest.raises(errors.UserError, match="Cannot write the dataset to data_dir=.*--data_dir"):
    build.build("shape_scenes/tiny", str(blocker / "sub"))


def test_missing_dataset_and_split_are_clear_errors(tmp_path, tiny_data_dir):
  with pytest.raises(source.DatasetError, match="(?s)not built in .*python -m experiments.build shape_scenes/tiny"):
    source.SceneSource("shape_scenes/tiny", "train", str(tmp_path))
  with pytest.raises(source.DatasetError, match="no split 'validation'; its splits are: .*train"):
    source.SceneSource("shape_scenes/tiny", "validation", tiny_data_dir)


def _copy(tiny_data_dir, tmp_path):
  dst = tmp_path / "copy"
  shutil.copytree(tiny_data_dir, dst)
  record = next((dst / "shape_scenes" / "tiny").glob("*/shape_scenes-train.array_record-*"))
  return str(dst), record


def test_truncated_record_file_is_caught_on_open(tiny_data_dir, tmp_path):
  data_dir, record = _copy(tiny_data_dir, tmp_path)
  os.truncate(record, record.stat().st_size // 2)
  with pytest.raises(source.DatasetError, match="(?s)is damaged.*Delete .* and rebuild"):
    source.SceneSource("shape_scenes/tiny", "train", data_dir)


def test_corrupted_record_is_caught_on_read(tiny_data_dir, tmp_path):
  data_dir, record = _copy(tiny_data_dir, tmp_path)
  data = bytearray(record.read_bytes())
  middle = len(data) // 2
  data[middle:middle + 256] = bytes(b ^ 0xFF for b in data[middle:middle + 256])
  record.write_bytes(bytes(data))
  src = source.SceneSource("shape_scenes/tiny", "train", data_dir)
  with pytest.raises(source.DatasetError, match="is damaged"):
    for i in range(len(src)):
      src[i]


def test_interrupted_build_never_looks_complete(tmp_path):
  proc = subprocess.Popen([PY, "-m", "experiments.build", "shape_scenes/tiny", f"--data_dir={tmp_path}"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
  deadline = time.time() + 60
  while not list(tmp_path.glob("shape_scenes/tiny/incomplete*")) and time.time() < deadline:
    time.sleep(0.2)
  os.killpg(proc.pid, signal.SIGKILL)
  proc.wait()
  assert list(tmp_path.glob("shape_scenes/tiny/incomplete*")), "the build never started writing"
  assert not build.is_built("shape_scenes/tiny", str(tmp_path))
  with pytest.raises(source.DatasetError, match="not built"):
    source.SceneSource("shape_scenes/tiny", "train", str(tmp_path))
