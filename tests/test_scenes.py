"""The scene sampler and the ray tracer: exact geometry, masks, determinism."""

import dataclasses

import numpy as np
import pytest

from nerf_vae_jax import geometry
from nerf_vae_jax.scenes import raytracer, sampler, shards, specs

SPEC = dataclasses.replace(specs.get_spec("tiny"), num_views=4)


def _render(scenes, spec=SPEC):
  out = raytracer.render(sampler.stack(scenes), height=spec.height, width=spec.width,
                         supersample=spec.supersample, ambient=spec.ambient)
  return [np.asarray(x) for x in out]


def _one_object(shape, size=0.3, position=(0.1, -0.2, 0.0), rotation=0.7, index=0):
  scene = sampler.sample_scene(SPEC, "test", index)
  n = SPEC.max_objects
  scene.update(shape=np.full(n, shape, np.int32), size=np.full(n, size, np.float32),
               position=np.tile(np.float32(position), (n, 1)), rotation=np.full(n, rotation, np.float32),
               valid=np.arange(n) == 0)
  return scene


def _surface_points(scene, depths, masks):
  o, d = geometry.pixel_rays(scene["intrinsics"], scene["cam_to_world"], SPEC.height, SPEC.width, xp=np)
  hit = masks > 0
  return (o + depths[..., None] * d)[hit], hit


def _local(points, scene, k=0):
  c, s = np.cos(scene["rotation"][k]), np.sin(scene["rotation"][k])
  p = points - scene["position"][k]
  return np.stack([c * p[:, 0] + s * p[:, 1], -s * p[:, 0] + c * p[:, 1], p[:, 2]], -1)


def test_depths_unproject_onto_a_sphere_surface():
  scene = _one_object(shape=0, size=0.4)
  _, depths, masks = _render([scene])
  points, hit = _surface_points(scene, depths[0], masks[0])
  assert hit.sum() > 50
  np.testing.assert_allclose(np.linalg.norm(points - scene["position"][0], axis=-1), 0.4, atol=2e-5)


@pytest.mark.parametrize("shape", [1, 2, 3])
def test_depths_unproject_onto_the_other_surfaces(shape):
  s = 0.35
  scene = _one_object(shape=shape, size=s)
  _, depths, masks = _render([scene])
  p, hit = _surface_points(scene, depths[0], masks[0])
  assert hit.sum() > 50
  p = _local(p, scene)
  r, z = np.hypot(p[:, 0], p[:, 1]), p[:, 2]
  if shape == 1:  # cube: on the boundary of [-s, s]^3
    dist = np.abs(np.abs(p).max(axis=-1) - s)
  elif shape == 2:  # cylinder: on the side or on a cap
    dist = np.where(np.abs(np.abs(z) - s) < 1e-4, np.maximum(r - s, 0), np.abs(r - s))
    assert (np.abs(z) <= s + 1e-4).all()
  else:  # cone: apex at +s, base radius s at -s
    dist = np.where(np.abs(z + s) < 1e-4, np.maximum(r - s, 0), np.abs(r - (s - z) / 2))
    assert (np.abs(z) <= s + 1e-4).all()
  np.testing.assert_array_less(dist, 1e-4)


def test_masks_agree_with_projected_object_centres():
  scenes = [sampler.sample_scene(SPEC, "train", i) for i in range(8)]
  _, depths, masks = _render(scenes)
  checked = 0
  for b, scene in enumerate(scenes):
    for k in np.flatnonzero(scene["valid"]):
      xy, z = geometry.project(scene["position"][k], scene["intrinsics"], scene["cam_to_world"], xp=np)
      for v in range(SPEC.num_views):
        j, i = np.floor(xy[v]).astype(int)
        if not (0 <= i < SPEC.height and 0 <= j < SPEC.width):
          continue
        m = masks[b, v, i, j]
        # The centre is inside object k: its pixel shows k, or something in front of it.
        assert m > 0
        if m != k + 1:
          assert depths[b, v, i, j] < np.linalg.norm(scene["position"][k] - scene["cam_to_world"][v, :3, 3])
        checked += 1
  assert checked > 40


def test_background_pixels_have_the_background_colour():
  scenes = [sampler.sample_scene(SPEC, "train", i) for i in range(4)]
  images, depths, masks = _render(scenes)
  for b, scene in enumerate(scenes):
    m = np.pad(masks[b], ((0, 0), (1, 1), (1, 1)))
    # Far from any object (3 x 3 neighbourhood empty), no subsample hits.
    empty = sum(m[:, 1 + di:1 + di + SPEC.height, 1 + dj:1 + dj + SPEC.width] for di in (-1, 0, 1)
                for dj in (-1, 0, 1)) == 0
    expected = np.round(scene["background"] * 255).astype(np.uint8)
    assert (images[b][empty] == expected).all()
    assert (depths[b][masks[b] == 0] == 0).all() and (depths[b][masks[b] > 0] > 0).all()


def test_shadows_darken_what_is_under_an_occluder():
  # A cube under a sphere, lit from straight above: the cube's top is in shadow.
  scene = _one_object(shape=1, size=0.3, position=(0.0, 0.0, -0.1))
  lit_scene = dict(scene, light_direction=np.array([0.0, 0.0, 1.0], np.float32))
  shadowed = dict(lit_scene, shape=np.array([1, 0, 0, 0], np.int32), valid=np.array([1, 1, 0, 0], bool),
                  position=np.array([[0, 0, -0.1], [0, 0, 0.7], [0, 0, 0], [0, 0, 0]], np.float32),
                  size=np.array([0.3, 0.15, 0.1, 0.1], np.float32))
  o = np.array([[0.05, 0.05, 0.21]], np.float32)  # just above the cube's top face
  d = np.array([[0.0, 0.0, -1.0]], np.float32)
  lit_rgb, _, _ = raytracer.shade(tuple(o.T), tuple(d.T), lit_scene, 0.35)
  dark_rgb, _, _ = raytracer.shade(tuple(o.T), tuple(d.T), shadowed, 0.35)
  np.testing.assert_allclose(np.asarray(lit_rgb), scene["color"][:1], atol=1e-6)  # full light
  np.testing.assert_allclose(np.asarray(dark_rgb), 0.35 * scene["color"][:1], atol=1e-6)  # ambient only


def test_objects_do_not_interpenetrate_and_fit_the_scene():
  spec = specs.get_spec("64px")
  for i in range(200):
    s = sampler.sample_scene(spec, "train", i)
    k = np.flatnonzero(s["valid"])
    assert 1 <= len(k) <= spec.max_objects
    bound3d = sampler._BOUND_3D[s["shape"][k]] * s["size"][k]
    assert (np.linalg.norm(s["position"][k], axis=-1) + bound3d <= spec.scene_radius + 1e-6).all()
    np.testing.assert_allclose(s["position"][k, 2], specs.FLOOR_Z + s["size"][k], atol=1e-6)
    fx = sampler._BOUND_XY[s["shape"][k]] * s["size"][k]
    for a in range(len(k)):
      for b in range(a):
        assert np.linalg.norm(s["position"][k[a], :2] - s["position"][k[b], :2]) >= fx[a] + fx[b]


def test_cameras_stay_in_their_shells():
  spec = specs.get_spec("64px")
  for split, cams in (("train", specs.TRAIN_CAMERAS), ("test_ood", specs.OOD_CAMERAS)):
    pos = np.concatenate([sampler.sample_scene(spec, split, i)["cam_to_world"][:, :3, 3] for i in range(50)])
    dist = np.linalg.norm(pos, axis=-1)
    elev = np.rad2deg(np.arcsin(pos[:, 2] / dist))
    assert any(((lo - 1e-4 <= dist) & (dist <= hi + 1e-4)).all() for lo, hi in cams.distance)
    assert all(any(lo - 1e-3 <= e <= hi + 1e-3 for lo, hi in cams.elevation_degrees) for e in elev)
  train = specs.TRAIN_CAMERAS
  assert specs.OOD_CAMERAS.distance[0][0] > train.distance[0][1]  # OOD is outside the training shell


def test_same_seed_same_bytes_whatever_the_chunking():
  a = shards.render_chunk("tiny", "train", 0, 8)
  b = shards.render_chunk("tiny", "train", 3, 5)  # other chunk, other padding
  c = shards.render_chunk("tiny", "train", 0, 8)
  for (ia, ea), (ic, ec) in zip(a, c):
    assert ia == ic and ea["images"] == ec["images"] and (ea["depths"] == ec["depths"]).all()
  for (ib, eb) in b:
    ea = a[ib][1]
    assert ea["images"] == eb["images"]
    assert (ea["depths"] == eb["depths"]).all() and (ea["masks"] == eb["masks"]).all()
  assert a[0][1]["images"] != a[1][1]["images"]  # different scenes differ


def test_edge_supersampling_matches_supersampling_every_pixel():
  """Adaptive anti-aliasing (k x k rays only on edges) against k x k rays in every pixel."""
  import jax.numpy as jnp
  spec = dataclasses.replace(specs.get_spec("64px_mini"), num_views=3)
  scenes = [sampler.sample_scene(spec, "train", i) for i in range(2)]
  images, _, _ = _render(scenes, spec)
  k = spec.supersample
  for scene, views in zip(scenes, images):
    for intr, c2w, image in zip(scene["intrinsics"], scene["cam_to_world"], views):
      o, d = geometry.pixel_rays(jnp.asarray(intr) * k, jnp.asarray(c2w), spec.height * k, spec.width * k)
      arrays = {key: jnp.asarray(v) for key, v in sampler.stack([scene]).items()}
      one = {key: v[0] for key, v in arrays.items()}
      rgb, _, _ = raytracer.shade(tuple(o.reshape(-1, 3).T), tuple(d.reshape(-1, 3).T), one, spec.ambient)
      full = np.round(np.asarray(rgb).reshape(spec.height, k, spec.width, k, 3).mean(axis=(1, 3)) * 255)
      err = np.abs(image.astype(float) - full)
      assert err.mean() < 0.5, err.mean()  # grey levels
      assert np.mean(err > 8) < 0.002  # almost no pixel visibly off


def test_png_decodes_to_the_same_pixels():
  import io
  from PIL import Image
  rng = np.random.default_rng(0)
  for shape in ((7, 5, 3), (4, 9)):
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    decoded = Image.open(io.BytesIO(shards.png(image)))
    assert decoded.mode == ("RGB" if len(shape) == 3 else "L")
    np.testing.assert_array_equal(np.asarray(decoded), image)
  with pytest.raises(ValueError, match="uint8"):
    shards.png(np.zeros((4, 4), np.uint16))
