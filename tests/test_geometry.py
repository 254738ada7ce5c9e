"""Camera conventions: checks that would catch a wrong sign, axis or offset."""

import jax.numpy as jnp
import numpy as np
import pytest

from nerf_vae_jax import geometry


def _camera(position=(3.0, 1.0, 2.0), fov=40.0, h=6, w=8):
  c2w = geometry.look_at(np.array(position), xp=np)
  return geometry.intrinsics_from_fov(fov, h, w).astype(np.float64), c2w


def test_look_at_is_a_rotation_that_looks_at_the_target():
  intr, c2w = _camera()
  rot = c2w[:3, :3]
  np.testing.assert_allclose(rot.T @ rot, np.eye(3), atol=1e-12)
  assert np.linalg.det(rot) == pytest.approx(1.0)
  # OpenGL: the camera looks along its -z axis, towards the origin.
  forward = -rot[:, 2]
  np.testing.assert_allclose(forward, -c2w[:3, 3] / np.linalg.norm(c2w[:3, 3]), atol=1e-12)
  assert rot[2, 1] > 0  # camera y (up) has a positive world-z component


def test_pixel_rays_closed_form():
  intr, c2w = _camera(h=6, w=8)
  o, d = geometry.pixel_rays(intr, c2w, 6, 8, xp=np)
  assert o.shape == d.shape == (6, 8, 3)
  np.testing.assert_allclose(np.linalg.norm(d, axis=-1), 1.0, atol=1e-12)
  np.testing.assert_allclose(o, np.broadcast_to(c2w[:3, 3], o.shape))
  # Pixel (row 1, column 6): camera-space direction ((6.5 - cx)/fx, -(1.5 - cy)/fy, -1).
  fx, fy, cx, cy = intr
  d_cam = np.array([(6.5 - cx) / fx, -(1.5 - cy) / fy, -1.0])
  np.testing.assert_allclose(d[1, 6], c2w[:3, :3] @ d_cam / np.linalg.norm(d_cam), atol=1e-12)
  # Column j > cx looks right (+x), row i < cy looks up (+y) in the camera frame.
  d_cam_all = d @ c2w[:3, :3]  # R^T d
  assert (d_cam_all[:, 4:, 0] > 0).all() and (d_cam_all[:3, :, 1] > 0).all()


def test_pixel_rays_carries_batch_dims_and_matches_jnp():
  intr, c2w = _camera()
  intr_b = np.stack([intr, intr * 1.1])[None]  # [1, 2, 4]
  c2w_b = np.stack([c2w, geometry.look_at(np.array([0.5, -3.0, 1.0]), xp=np)])[None]
  o, d = geometry.pixel_rays(intr_b, c2w_b, 6, 8, xp=np)
  assert o.shape == d.shape == (1, 2, 6, 8, 3)
  oj, dj = geometry.pixel_rays(jnp.float32(intr_b), jnp.float32(c2w_b), 6, 8)
  np.testing.assert_allclose(np.asarray(dj), d, atol=1e-6)
  np.testing.assert_allclose(np.asarray(oj), o, atol=1e-5)


def test_project_inverts_pixel_rays():
  intr, c2w = _camera()
  o, d = geometry.pixel_rays(intr, c2w, 6, 8, xp=np)
  t = np.linspace(1.0, 5.0, 48).reshape(6, 8)
  xy, z = geometry.project(o + t[..., None] * d, intr, c2w, xp=np)
  jj, ii = np.meshgrid(np.arange(8) + 0.5, np.arange(6) + 0.5)
  np.testing.assert_allclose(xy[..., 0], jj, atol=1e-9)
  np.testing.assert_allclose(xy[..., 1], ii, atol=1e-9)
  assert (z > 0).all()


def test_world_point_projected_and_cast_back_passes_through_itself():
  rng = np.random.default_rng(0)
  intr, c2w = _camera()
  for p in rng.uniform(-1, 1, (20, 3)):
    (x, y), z = geometry.project(p, intr, c2w, xp=np)
    # Shift the principal point so that pixel (0, 0)'s centre lands on (x, y).
    fx, fy, cx, cy = intr
    shifted = np.array([fx, fy, cx - x + 0.5, cy - y + 0.5])
    o, d = geometry.pixel_rays(shifted, c2w, 1, 1, xp=np)
    np.testing.assert_allclose(np.cross(p - o[0, 0], d[0, 0]), 0.0, atol=1e-12)
    assert np.dot(p - o[0, 0], d[0, 0]) > 0


def test_ray_sphere_bounds():
  o = np.array([[0.0, 0.0, 5.0], [0.0, 3.0, 5.0], [0.0, 0.0, 0.5]])
  d = np.array([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
  near, far, hit = geometry.ray_sphere_bounds(o, d, 2.0, xp=np)
  np.testing.assert_allclose(near[0], 3.0)
  np.testing.assert_allclose(far[0], 7.0)
  assert hit.tolist() == [True, False, True]
  assert near[2] == 0.0 and far[2] == pytest.approx(np.sqrt(4 - 0.25))
