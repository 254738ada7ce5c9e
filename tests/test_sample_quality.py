"""Sample metrics: the Fréchet distance, object statistics, the far-side test of what a view sees, and the
probe's cache."""

import dataclasses
import os

import flax.serialization
import numpy as np
import pytest

from nerf_vae_jax import errors
from nerf_vae_jax.data import source
from nerf_vae_jax.evaluation import haze_regions, probe_net, sample_metrics, sample_quality, uncertainty
from nerf_vae_jax.scenes import specs


def test_frechet_distance_is_zero_on_a_set_and_the_squared_shift_when_features_shift():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(500, 8)) @ rng.normal(size=(8, 8))
  assert sample_quality.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
  shift = rng.normal(size=8)
  # Equal covariances: only the means differ, by exactly the shift.
  assert sample_quality.frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-6)
  # It grows with the shift, and with a change of spread.
  small, large = (sample_quality.frechet_distance(a, a + f * shift) for f in (0.5, 2.0))
  assert small < float(shift @ shift) < large
  assert sample_quality.frechet_distance(a, 2.0 * (a - a.mean(0)) + a.mean(0)) > 0.5
  # Two samples of one Gaussian: near zero against the distance between two different Gaussians.
  b, c = rng.normal(size=(4000, 4)), rng.normal(size=(4000, 4))
  assert sample_quality.frechet_distance(b, c) < 0.02
  # Closed form for diagonal Gaussians: |dmu|^2 + sum (s1 - s2)^2.
  d = rng.normal(size=(20000, 4)) * np.array([1.0, 2.0, 0.5, 1.0]) + 1.0
  assert sample_quality.frechet_distance(b, d) == pytest.approx(4.0 + 1.0 + 0.25, rel=0.05)


def test_blobs_are_counted_by_4_neighbour_connectivity_and_specks_are_dropped():
  m = np.zeros((3, 8, 8), bool)
  m[0, 1:3, 1:3] = True  # a square
  m[0, 5:7, 4:8] = True  # a bar
  m[0, 0, 7] = True  # a speck (1 pixel)
  m[1, 2, 2] = m[1, 3, 3] = m[1, 2, 3] = True  # an L: connected
  m[1, 6, 6] = m[1, 7, 7] = True  # diagonal neighbours only: two specks
  assert sample_quality.count_blobs(m).tolist() == [2, 1, 0]
  u = np.zeros((1, 8, 8), bool)
  u[0, 1:7, 1] = u[0, 6, 1:7] = u[0, 1:7, 6] = True  # a U: one blob, however its labels spread
  assert sample_quality.count_blobs(u).tolist() == [1]


def test_object_comparison_of_identical_sets_and_of_haze():
  rng = np.random.default_rng(1)
  masks = np.zeros((20, 16, 16), np.uint8)
  for i in range(20):
    for k in range(i % 3 + 1):
      r, c = rng.integers(0, 12, 2)
      masks[i, r:r + 3, c:c + 3] = k + 1
  same = sample_quality.compare_objects((masks > 0).astype(np.float32), masks)
  assert same["count_tv"] == 0.0 and same["coverage_ratio"] == pytest.approx(1.0) and same["haze_share"] == 0.0
  assert same["coverage_w1"] == pytest.approx(0.0, abs=1e-12)
  haze = sample_quality.compare_objects(np.full((20, 16, 16), 0.4), masks)
  assert haze["haze_share"] == 1.0 and haze["coverage_samples"] == 0.0 and haze["count_tv"] == 1.0
  assert haze["fog_share"] == 1.0 and same["fog_share"] == 0.0  # all haze is fog where nothing is opaque


def test_fog_is_haze_away_from_every_opaque_pixel():
  acc = np.zeros((2, 6, 6))
  acc[0, 2, 2] = 1.0  # one opaque pixel ...
  acc[0, 1:4, 1:4][acc[0, 1:4, 1:4] == 0] = 0.5  # ... ringed by haze: a blurred silhouette, no fog
  acc[1, 0, 0] = acc[1, 5, 5] = 0.3  # haze with nothing opaque near: fog
  acc[0, 5, 0] = 0.95  # opaque, not hazy: neither
  assert sample_quality.haze_share(acc) == pytest.approx(10 / 72)
  assert sample_quality.fog_share(acc) == pytest.approx(2 / 72)
  assert sample_quality.fog_share(acc[:1]) == 0.0 and sample_quality.fog_share(acc[1]) == pytest.approx(2 / 36)
  assert sample_quality.total_variation([0.5, 0.5, 0.0], [0.0, 0.5, 0.5]) == pytest.approx(0.5)


def test_mean_colour_images():
  images = np.random.default_rng(0).integers(0, 256, (2, 3, 4, 4, 3), np.uint8)
  out = sample_metrics.mean_colour_images(images)
  assert out.shape == images.shape and out.dtype == np.uint8
  np.testing.assert_allclose(out[1, 2, 0, 0], images[1, 2].reshape(-1, 3).mean(0), atol=0.5)
  assert np.ptp(out[1, 2].reshape(-1, 3), axis=0).max() == 0


def test_a_view_sees_its_own_surfaces_and_the_far_view_is_the_most_opposite(tiny_data_dir):
  scenes = [source.SceneSource("shape_scenes/tiny", "test", tiny_data_dir)[i] for i in range(4)]
  for scene in scenes:
    obj = scene["masks"][5] > 0
    own = uncertainty.seen_from(scene, 5, source=5)
    assert own.sum() >= 0.95 * obj.sum() and not (own & ~obj).any()
    far = uncertainty.far_view(scene)
    pos = scene["cam_to_world"][:, :3, 3] / np.linalg.norm(scene["cam_to_world"][:, :3, 3], axis=-1, keepdims=True)
    assert far >= 4 and all(pos[far] @ pos[0] <= pos[v] @ pos[0] + 1e-6 for v in range(4, len(pos)))
    assert not uncertainty.hidden_from(scene, 5, source=5).any()
    assert not (uncertainty.hidden_from(scene, far) & uncertainty.seen_from(scene, far)).any()
  # From the far side, view 0 sees less of what the far view shows than the far view itself does.
  seen = sum(uncertainty.seen_from(s, uncertainty.far_view(s)).sum() for s in scenes)
  total = sum((s["masks"][uncertainty.far_view(s)] > 0).sum() for s in scenes)
  assert 0 < seen < 0.9 * total


def test_hidden_objects_are_those_the_context_view_does_not_show():
  masks = np.zeros((2, 4, 4), np.uint8)
  masks[0, :2, :2] = 1  # view 0 shows object 1 only
  masks[1, :2, :2], masks[1, 2:, 2:], masks[1, 0, 3] = 1, 2, 3  # the target shows objects 1, 2 and 3
  hidden = uncertainty.hidden_from({"masks": masks}, target=1, source=0)
  np.testing.assert_array_equal(hidden, (masks[1] == 2) | (masks[1] == 3))
  assert not uncertainty.hidden_from({"masks": masks}, target=0, source=1).any()


def test_haze_regions_partition_the_pixels_by_the_masks():
  masks = np.zeros((1, 6, 6), np.uint8)
  masks[0, 1:5, 1:5] = 1  # a 4x4 object: 4 interior pixels, 12 on its inner edge, 20 on its outer edge
  acc = np.zeros((1, 6, 6))
  acc[0, 2, 2] = 0.5  # hazy inside
  acc[0, 1, 1] = acc[0, 0, 0] = 0.5  # hazy on both edges
  r = haze_regions.regions(acc, masks)
  assert [r[k]["pixels"] * 36 for k in haze_regions.REGIONS] == pytest.approx([4, 12, 20, 0])
  assert [r[k]["hazy_of_all"] * 36 for k in haze_regions.REGIONS] == pytest.approx([1, 1, 1, 0])
  assert r["object_interior"]["hazy"] == pytest.approx(1 / 4) and r["far_backdrop"]["hazy"] == 0.0
  assert sum(x["hazy_of_all"] for x in r.values()) == pytest.approx(sample_quality.haze_share(acc))


def test_the_data_has_partial_pixels_only_when_pixels_are_split_into_rays():
  assert haze_regions.partial_coverage("tiny", "test", 2, rays_per_side=1) == 0.0  # one ray: covered or not
  share = haze_regions.partial_coverage("tiny", "test", 2, rays_per_side=4)
  assert 0.0 < share < 0.2  # silhouettes cross a few pixels in every view


def test_the_hidden_objects_phrase_says_when_there_are_none():
  none = {"num_scenes": 16, "pixels_hidden": 0, "spread_hidden": float("nan"), "hidden_ratio": float("nan")}
  assert uncertainty.hidden_summary(none) == "no object hidden from view 0 in these 16 scenes"
  some = {"num_scenes": 32, "pixels_hidden": 52, "spread_hidden": 0.0233, "hidden_ratio": 0.541}
  assert uncertainty.hidden_summary(some) == "0.023 on objects it does not show (52 pixels; ratio 0.54)"


def test_probe_cache_follows_the_dataset_spec(tiny_data_dir, tmp_path, monkeypatch, capsys):
  settings = probe_net.Settings(train_scenes=32, epochs=4, batch_size=32)
  logs = []
  model, params, info = probe_net.load_or_train("shape_scenes/tiny", tiny_data_dir, settings, log=logs.append)
  assert logs and os.path.exists(os.path.join(info["folder"], "probe.json"))
  assert set(info["held_out"]) >= {"count_accuracy", "shapes_accuracy", "hues_accuracy", "layout_accuracy"}
  images = source.SceneSource("shape_scenes/tiny", "test", tiny_data_dir)[0]["images"]
  feats = probe_net.features((model, params, info), images)
  assert feats.shape == (len(images), 64)
  # The same spec and settings: read from the cache, not trained again, same features.
  logs.clear()
  cached = probe_net.load_or_train("shape_scenes/tiny", tiny_data_dir, settings, log=logs.append)
  assert not logs and cached[2]["folder"] == info["folder"]
  np.testing.assert_allclose(probe_net.features(cached, images), feats, rtol=1e-6)
  # Published into the package, it is read before any cache, on a machine without the dataset.
  monkeypatch.setattr(probe_net, "PUBLISHED", str(tmp_path / "published"))
  path = probe_net.publish("shape_scenes/tiny", tiny_data_dir, settings, log=logs.append)
  assert logs == [f"Published: {path} (commit it with its .json)"] and path.startswith(str(tmp_path / "published"))
  logs.clear()  # publishing again keeps the file and says so
  assert probe_net.publish("shape_scenes/tiny", tiny_data_dir, settings, log=logs.append) == path
  assert len(logs) == 1 and logs[0].startswith("Already published, kept") and os.path.exists(path)
  logs.clear()
  published = probe_net.load_or_train("shape_scenes/tiny", str(tmp_path / "elsewhere"), settings, log=logs.append)
  assert not logs and published[2]["folder"] == path and published[2]["held_out"] == info["held_out"]
  np.testing.assert_array_equal(probe_net.features(published, images), feats)
  assert not os.path.exists(tmp_path / "elsewhere")
  # A published file that does not fit the network is a clear error, not a silent retraining.
  params_only = flax.serialization.msgpack_restore(open(path, "rb").read())
  params_only["params"]["Dense_0"]["bias"] = np.zeros(3, np.float32)
  with open(path, "wb") as f:
    f.write(flax.serialization.msgpack_serialize(params_only))
  with pytest.raises(errors.UserError, match="--publish"):
    probe_net.load_or_train("shape_scenes/tiny", tiny_data_dir, settings)
  # A changed dataset spec (or probe settings) is another key: trained anew, in another folder.
  spec = specs.SPECS["tiny"]
  assert probe_net.cache_key(spec, settings) != probe_net.cache_key(dataclasses.replace(spec, seed=1), settings)
  assert probe_net.cache_key(spec, settings) != probe_net.cache_key(spec, dataclasses.replace(settings, epochs=5))
  monkeypatch.setitem(specs.SPECS, "tiny", dataclasses.replace(spec, ambient=0.5))
  changed = probe_net.load_or_train("shape_scenes/tiny", tiny_data_dir, settings, log=logs.append)
  assert logs and changed[2]["folder"] != info["folder"]


def test_the_published_probe_is_the_current_specs_and_is_read_without_the_dataset(tmp_path):
  # Each published probe must carry the key of its dataset's current spec and builder version and of the
  # default settings: after a change to any of them it would silently go unread (and the probe be trained
  # on every machine again) until republished with `experiments.probe --publish`.
  stems = {f.rsplit(".", 1)[0] for f in os.listdir(probe_net.PUBLISHED)}
  assert "shape_scenes_32px" in {s.rsplit("-", 1)[0] for s in stems}  # `make demo`'s dataset
  for stem in stems:
    name = "shape_scenes/" + stem.rsplit("-", 1)[0].removeprefix("shape_scenes_")
    assert probe_net.published_path(specs.parse_name(name)) == os.path.join(probe_net.PUBLISHED, stem), (
        f"{stem} is stale: republish it (python -m experiments.probe --dataset={name} --publish)")
  logs = []
  model, params, info = probe_net.load_or_train("shape_scenes/32px", str(tmp_path), log=logs.append)
  assert not logs and not os.listdir(tmp_path)  # neither trained nor cached: read from the package
  assert info["held_out"]["count_accuracy"] > 0.7 and info["held_out"]["layout_accuracy"] > 0.95
  images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
  feats = probe_net.features((model, params, info), images)
  assert feats.shape == (3, 64) and np.all(np.isfinite(feats)) and np.std(feats) > 0


def test_the_frechet_spread_is_what_another_draw_moves_the_distance_by():
  rng = np.random.default_rng(0)
  dim, views = 6, 4
  real = rng.normal(size=(512, dim))
  draw = lambda scenes: rng.normal(0.3, 1.1, size=(scenes * views, dim))  # a generator a little off
  # Across 40 independent draws of 64 scenes, the distance moves by about what one draw's bootstrap says.
  across = np.std([sample_quality.frechet_distance(draw(64), real) for _ in range(40)], ddof=1)
  one = draw(64)
  spread = sample_quality.frechet_spread(one, real, groups=64)
  assert 0.5 < spread / across < 2.0, (spread, across)
  assert spread == sample_quality.frechet_spread(one, real, groups=64)  # the seed fixes the resamples
  # More scenes, a steadier distance.
  assert sample_quality.frechet_spread(draw(512), real, groups=512) < 0.6 * spread
  with pytest.raises(ValueError, match="divide the 256 rows"):
    sample_quality.frechet_spread(one, real, groups=3)
