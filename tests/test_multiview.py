"""Bring your own scenes: export shape_scenes to the blender and srn formats, convert them back,
and check images, cameras, rays, bounds, bad input, and a training run on the converted data."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import small_config
from nerf_vae_jax import geometry
from nerf_vae_jax.data import build, export, formats, multiview, source

NUM = 3  # scenes per split


@pytest.fixture(scope="module")
def exported(tiny_data_dir, tmp_path_factory):
  """{format: folder} of the first NUM train and test scenes of shape_scenes/tiny."""
  root = tmp_path_factory.mktemp("exported")
  return {f: export.export("shape_scenes/tiny", f, str(root / f), num_scenes=NUM, data_dir=tiny_data_dir)
          for f in formats.FORMATS}


@pytest.fixture(scope="module")
def converted(exported, tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("converted"))
  for f, folder in exported.items():
    multiview.convert(f"rt_{f}", str(folder), f, data_dir)
  return data_dir


@pytest.mark.parametrize("fmt", formats.FORMATS)
def test_round_trip_gives_the_same_images_and_cameras(tiny_data_dir, converted, fmt):
  original = source.SceneSource("shape_scenes/tiny", "test", tiny_data_dir)
  back = source.SceneSource(f"multiview/rt_{fmt}", "test", converted)
  assert len(back) == NUM and back.spec.num_views == original.spec.num_views
  for i in range(NUM):
    a, b = original[i], back[i]
    assert b["scene_name"] == f"{int(a['scene_id']):06d}"
    np.testing.assert_array_equal(b["images"], a["images"])
    # JSON floats and %.9g text both round-trip float32 exactly; the OpenCV flip is exact too.
    np.testing.assert_allclose(b["cam_to_world"], a["cam_to_world"], atol=1e-6)
    np.testing.assert_allclose(b["intrinsics"], a["intrinsics"], rtol=1e-6)
    # The same rays: every pixel's ray passes through the same world points.
    h, w = a["images"].shape[1:3]
    oa, da = geometry.pixel_rays(a["intrinsics"], a["cam_to_world"], h, w, xp=np)
    ob, db = geometry.pixel_rays(b["intrinsics"], b["cam_to_world"], h, w, xp=np)
    np.testing.assert_allclose(ob + 2.5 * db, oa + 2.5 * da, atol=1e-5)


def test_estimated_bounds_contain_the_objects_and_stay_inside_the_cameras(tiny_data_dir, converted):
  spec = build.spec_of("multiview/rt_blender", converted)
  original = source.SceneSource("shape_scenes/tiny", "train", tiny_data_dir)
  # shape_scenes puts objects within radius 1 of the origin and cameras at 2.6-3.4 with a 40 degree field of view:
  # the largest sphere every camera sees whole is 2.6 x sin(20 deg) = 0.89 at the nearest possible camera.
  assert 0.85 < spec.scene_radius < 1.2 and 2.6 < spec.orbit_distance < 3.4
  for i in range(NUM):
    objects = original[i]["objects"]
    assert np.all(np.linalg.norm(objects["position"], axis=-1) < spec.scene_radius)


def test_estimate_bounds_finds_the_centre_of_cameras_looking_at_a_point():
  centre = np.array([0.5, -1.0, 2.0])
  az = np.linspace(0, 2 * np.pi, 7, endpoint=False)
  c2w = geometry.look_at(centre + geometry.on_sphere(4.0, az, np.full(7, 0.4)), target=centre, xp=np)
  intr = np.tile(geometry.intrinsics_from_fov(60.0, 40, 40), (7, 1))
  got, radius = multiview.estimate_bounds(c2w, intr, 40, 40)
  np.testing.assert_allclose(got, centre, atol=1e-6)
  assert radius == pytest.approx(4.0 * np.sin(np.deg2rad(30.0)), rel=1e-6)


def test_recentred_cameras_see_the_same_points(exported, tmp_path):
  centre = np.array([0.25, -0.5, 0.1])
  multiview.convert("shifted", str(exported["blender"]), "blender", str(tmp_path), scene_centre=centre,
                    scene_radius=0.8)
  a = source.SceneSource("multiview/shifted", "train", str(tmp_path))[0]
  b = formats.read_blender(exported["blender"] / "train" / a["scene_name"])
  np.testing.assert_allclose(a["cam_to_world"][:, :3, 3] + centre, b["cam_to_world"][:, :3, 3], atol=1e-6)
  assert build.spec_of("multiview/shifted", str(tmp_path)).scene_radius == pytest.approx(0.8)


def test_srn_poses_are_opencv_and_convert_to_opengl(tmp_path):
  """An OpenCV camera at the origin looking down world +z, y down: its centre ray is +z, its top row looks -y."""
  scene = tmp_path / "train" / "s"
  (scene / "rgb").mkdir(parents=True)
  (scene / "pose").mkdir()
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(scene / "rgb" / "0.png")
  (scene / "pose" / "0.txt").write_text(" ".join(map(str, np.eye(4).ravel())))
  (scene / "intrinsics.txt").write_text("8 4 4 0.\n0. 0. 0.\n1.\n8 8\n")
  s = formats.read_srn(scene)
  o, d = geometry.pixel_rays(s["intrinsics"], s["cam_to_world"], 8, 8, xp=np)
  centre = d[0, 3:5, 3:5].mean((0, 1))
  np.testing.assert_allclose(centre / np.linalg.norm(centre), [0, 0, 1], atol=1e-6)
  assert d[0, 0, 4, 1] < 0 and d[0, -1, 4, 1] > 0  # image top (row 0) sees -y: OpenCV's y is down


def test_rgba_frames_are_composited_over_the_background_and_give_masks(tmp_path):
  scene = tmp_path / "train" / "s"
  scene.mkdir(parents=True)
  rgba = np.zeros((4, 4, 4), np.uint8)
  rgba[1:3, 1:3] = (200, 0, 0, 255)
  rgba[0, 0] = (0, 0, 200, 128)  # half transparent
  Image.fromarray(rgba, "RGBA").save(scene / "f.png")
  (scene / "transforms.json").write_text(json.dumps(
      {"camera_angle_x": 0.8, "frames": [{"file_path": "f", "transform_matrix": np.eye(4).tolist()}]}))
  s = formats.read_blender(scene, background=(0.0, 1.0, 0.0))
  assert tuple(s["images"][0, 1, 1]) == (200, 0, 0) and tuple(s["images"][0, 3, 3]) == (0, 255, 0)
  np.testing.assert_allclose(s["images"][0, 0, 0], [0, 127, 100], atol=1)
  assert s["masks"][0].sum() == 5 and s["masks"][0, 1, 1] == 1  # alpha > 0.5
  assert s["intrinsics"][0, 0] == pytest.approx(0.5 * 4 / np.tan(0.4))


def test_resized_views_keep_their_rays():
  """Pixel (i, j) at half size covers pixels 2i..2i+1, 2j..2j+1: its centre ray is the ray through (2j + 1, 2i + 1)."""
  c2w = geometry.look_at(geometry.on_sphere(3.0, np.array([0.3]), np.array([0.5])), xp=np)
  intr = geometry.intrinsics_from_fov(40.0, 32, 32)[None] * np.array([1.0, 1.0, 1.03, 0.98], np.float32)
  scene = {"images": np.zeros((1, 32, 32, 3), np.uint8), "intrinsics": intr, "cam_to_world": c2w, "masks": None}
  small = multiview.resize(scene, 16, 16)
  o, d = geometry.pixel_rays(small["intrinsics"], c2w, 16, 16, xp=np)
  j, i = np.meshgrid(np.arange(16), np.arange(16))
  o2, d2 = geometry.image_rays(intr, c2w, 2.0 * j + 1, 2.0 * i + 1, xp=np)
  np.testing.assert_allclose(d[0], d2[0], atol=1e-6)


def _blender_scene(root, name="s", size=(8, 8), frames=2):
  scene = root / "train" / name
  scene.mkdir(parents=True)
  fr = []
  for k in range(frames):
    Image.fromarray(np.zeros(size + (3,), np.uint8)).save(scene / f"{k}.png")
    c2w = geometry.look_at(geometry.on_sphere(3.0, np.array([k * 0.5]), np.array([0.4])), xp=np)[0]
    fr.append({"file_path": f"{k}.png", "transform_matrix": c2w.tolist()})
  (scene / "transforms.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": fr}))
  return scene


def _edit_frames(scene, fn):
  meta = json.loads((scene / "transforms.json").read_text())
  fn(meta)
  (scene / "transforms.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("problem, message", [
    ("missing frame", r"1\.png: frame file not found"),
    ("unreadable frame", r"1\.png: cannot read the image"),
    ("not rigid", r"frame 0: the camera pose is not a rigid transform"),
    ("sizes differ", r"images of different sizes in one scene"),
    ("intrinsics", r"frame 0: intrinsics .* do not match the 8x8 image"),
    ("w and h", r"0\.png: the image is 8x8 but .* says w=16, h=16"),
    ("unknown format", r"Unknown format 'colmap'"),
    ("empty folder", r"no blender scenes found"),
])
def test_bad_input_names_the_file_and_writes_nothing_complete(tmp_path, problem, message):
  root = tmp_path / "src"
  scene = _blender_scene(root)
  fmt = "blender"
  if problem == "missing frame":
    (scene / "1.png").unlink()
  elif problem == "unreadable frame":
    (scene / "1.png").write_bytes(b"not a png")
  elif problem == "not rigid":
    _edit_frames(scene, lambda m: m["frames"][0]["transform_matrix"][0].__setitem__(0, 2.0))
  elif problem == "sizes differ":
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(scene / "1.png")
  elif problem == "intrinsics":
    _edit_frames(scene, lambda m: m["frames"][0].update(fl_x=10.0, cx=20.0, cy=4.0))
  elif problem == "w and h":
    _edit_frames(scene, lambda m: m.update(w=16, h=16))
  elif problem == "unknown format":
    fmt = "colmap"
  elif problem == "empty folder":
    shutil.rmtree(root)
    root.mkdir()
  with pytest.raises(formats.ConversionError, match=message):
    multiview.convert("bad", str(root), fmt, str(tmp_path / "data"))
  assert not build.is_built("multiview/bad", str(tmp_path / "data"))


def test_a_frame_that_fails_while_writing_leaves_no_complete_dataset(tmp_path):
  root = tmp_path / "src"
  scene = _blender_scene(root)
  noise = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
  Image.fromarray(noise).save(scene / "1.png")
  data = (scene / "1.png").read_bytes()
  (scene / "1.png").write_bytes(data[:len(data) // 2])  # the header reads; the pixels do not
  with pytest.raises(Exception, match=r"1\.png"):
    multiview.convert("cut", str(root), "blender", str(tmp_path / "data"))
  assert not build.is_built("multiview/cut", str(tmp_path / "data"))
  with pytest.raises(Exception, match="Convert it first"):
    source.SceneSource("multiview/cut", "train", str(tmp_path / "data"))


def test_views_per_scene_are_the_fewest_or_chosen(tmp_path):
  root = tmp_path / "src"
  _blender_scene(root, "a", frames=5)
  _blender_scene(root, "b", frames=3)
  assert multiview.plan("v", str(root), "blender").views == 3
  np.testing.assert_array_equal(multiview.pick_views(5, 3), [0, 2, 4])
  with pytest.raises(formats.ConversionError, match=r"--views=4, but .*b has only 3 views"):
    multiview.plan("v", str(root), "blender", views=4)


def test_training_and_evaluation_run_on_a_converted_dataset(converted, tmp_path):
  from nerf_vae_jax.evaluation import run as evaluation
  from nerf_vae_jax.train import loop
  config = small_config(converted, 2, ckpt_every=2)
  config.data.name = "multiview/rt_srn"  # the only change
  last = loop.train(config, str(tmp_path))
  assert np.isfinite(last["loss"])
  out_dir = evaluation.evaluate(str(tmp_path), num_scenes=2, context=(1, 4), num_images=1)
  results = json.loads(open(f"{out_dir}/metrics.json").read())["results"]
  assert [r["num_context_views"] for r in results] == [1, 4]
  assert all(np.isfinite(r["psnr"]) and "mask_iou" not in r for r in results)  # srn has no masks


def test_the_commands_export_and_convert(tiny_data_dir, tmp_path):
  """The entry points themselves: export to srn, convert back, and the one-line error of a missing flag."""
  import subprocess
  import sys
  env = {"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"}
  run = lambda *a: subprocess.run([sys.executable, "-m", *a], capture_output=True, text=True, timeout=300, env=env)
  r = run("experiments.export", "shape_scenes/tiny", "--format=srn", f"--out={tmp_path}/srn", "--num_scenes=2",
          f"--data_dir={tiny_data_dir}")
  assert r.returncode == 0, r.stderr[-2000:]
  r = run("experiments.build", "multiview/cli", f"--source={tmp_path}/srn", "--format=srn", f"--data_dir={tmp_path}/d")
  assert r.returncode == 0 and "Converted 4 scenes into multiview/cli" in r.stdout, r.stderr[-2000:]
  r = run("experiments.build", "multiview/cli", f"--source={tmp_path}/srn", "--format=srn", f"--data_dir={tmp_path}/d")
  assert r.returncode == 0 and "multiview/cli is already built" in r.stdout, r.stderr[-2000:]
  r = run("experiments.build", "multiview/cli2", "--format=srn", f"--data_dir={tmp_path}/d")
  assert r.returncode != 0 and "needs --source=DIR" in r.stderr
  r = run("experiments.build", "multiview/cli3", f"--source={tmp_path}/nowhere", "--format=srn")
  assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith("error: ") and "no such folder" in r.stderr
