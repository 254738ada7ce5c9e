"""Cameras and rays: the one place where the camera convention lives.

Conventions (the dataset, the model, the baselines and evaluation all rely on
them):

* World: right-handed, z up. Scenes are centred on the world origin.
* ``cam_to_world`` [..., 4, 4]: the NeRF/Blender (OpenGL) convention. Its
  columns are the camera's x (right), y (up) and z axes and its position, in
  world coordinates; the camera looks along its **-z** axis.
* ``intrinsics`` [..., 4] = (fx, fy, cx, cy) in pixels. Pixel (row i, column j)
  has its centre at (x, y) = (j + 0.5, i + 0.5). Its ray direction in camera
  space is ((j + 0.5 - cx) / fx, -(i + 0.5 - cy) / fy, -1), normalised to unit
  length, then rotated into the world by ``cam_to_world``.
* Distances along rays (``t``, depth) are measured along unit-length
  directions from the camera origin.

Every function takes an ``xp`` argument (``numpy`` or ``jax.numpy``) so the
same code serves data preparation on the host and the model on the device.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def pixel_rays(intrinsics, cam_to_world, height: int, width: int, xp=jnp):
  """Rays through the centres of every pixel.

  Args:
    intrinsics: [..., 4] (fx, fy, cx, cy) in pixels.
    cam_to_world: [..., 4, 4] OpenGL camera-to-world matrices.
    height, width: image size in pixels.
    xp: ``numpy`` or ``jax.numpy``.

  Returns:
    (origins, directions), each [..., H, W, 3] in world coordinates;
    directions have unit length.
  """
  dtype = xp.asarray(cam_to_world).dtype
  x = xp.arange(width, dtype=dtype)[None, :] + 0.5  # pixel (i, j) has its centre at (j + 0.5, i + 0.5)
  y = xp.arange(height, dtype=dtype)[:, None] + 0.5
  return image_rays(intrinsics, cam_to_world, x, y, xp)


def image_rays(intrinsics, cam_to_world, x, y, xp=jnp):
  """Rays through image points (x, y), in pixels (a pixel's centre is at +0.5).

  Args:
    intrinsics: [..., 4] (fx, fy, cx, cy); cam_to_world: [..., 4, 4].
    x, y: image coordinates whose shapes broadcast to [..., A, B] (two
      trailing point axes after the cameras' batch axes).

  Returns:
    (origins, directions), each [..., A, B, 3], directions of unit length.
  """
  intrinsics = xp.asarray(intrinsics)
  cam_to_world = xp.asarray(cam_to_world)
  fx, fy, cx, cy = (intrinsics[..., k, None, None] for k in range(4))
  # Camera space: x right, y up (image rows go down), looking along -z.
  x = (x - cx) / fx
  y = -(y - cy) / fy
  inv_norm = 1.0 / xp.sqrt(x * x + y * y + 1.0)
  # Rotated into the world one component at a time: no [..., 3, 3] products
  # and sums, which XLA:CPU and numpy run many times slower.
  rot = cam_to_world[..., None, None, :3, :3]
  directions = xp.stack([(rot[..., i, 0] * x + rot[..., i, 1] * y - rot[..., i, 2]) * inv_norm
                         for i in range(3)], axis=-1)
  origins = xp.broadcast_to(cam_to_world[..., None, None, :3, 3], directions.shape)
  return origins, directions


def project(points, intrinsics, cam_to_world, xp=jnp):
  """Projects world points into a camera: the inverse of ``pixel_rays``.

  Args:
    points: [..., 3] world coordinates.
    intrinsics: [..., 4]; cam_to_world: [..., 4, 4] (broadcast with points).

  Returns:
    (xy, z): xy [..., 2] continuous pixel coordinates (x = column + 0.5 at a
    pixel centre, y = row + 0.5), and z [...] the depth along the viewing axis
    (positive in front of the camera).
  """
  rot = cam_to_world[..., :3, :3]
  rel = points - cam_to_world[..., :3, 3]
  p_cam = xp.sum(rot * rel[..., :, None], axis=-2)  # R^T (p - o)
  z = -p_cam[..., 2]
  fx, fy, cx, cy = (intrinsics[..., k] for k in range(4))
  x = fx * p_cam[..., 0] / z + cx
  y = -fy * p_cam[..., 1] / z + cy
  return xp.stack([x, y], axis=-1), z


def look_at(position, target=(0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0), xp=jnp):
  """OpenGL camera-to-world matrix [..., 4, 4] looking from position at target.

  The camera's -z axis points at the target and its y axis is as close to
  ``up`` as possible. ``position`` must not be straight above or below the
  target.
  """
  position = xp.asarray(position)
  dtype = position.dtype
  target = xp.asarray(target, dtype=dtype)
  up = xp.asarray(up, dtype=dtype)
  back = position - target
  back = back / xp.linalg.norm(back, axis=-1, keepdims=True)
  right = xp.cross(xp.broadcast_to(up, back.shape), back)
  right = right / xp.linalg.norm(right, axis=-1, keepdims=True)
  cam_up = xp.cross(back, right)
  rot = xp.stack([right, cam_up, back], axis=-1)  # columns
  top = xp.concatenate([rot, position[..., :, None]], axis=-1)
  bottom = xp.broadcast_to(xp.asarray([0.0, 0.0, 0.0, 1.0], dtype=dtype), top.shape[:-2] + (1, 4))
  return xp.concatenate([top, bottom], axis=-2)


def on_sphere(distance, azimuth, elevation, xp=np):
  """Points [..., 3] at ``distance`` from the origin; angles in radians,
  elevation above the xy plane, azimuth from +x towards +y."""
  ce = xp.cos(elevation)
  return distance * xp.stack([ce * xp.cos(azimuth), ce * xp.sin(azimuth), xp.sin(elevation)], axis=-1)


def intrinsics_from_fov(fov_degrees: float, height: int, width: int) -> np.ndarray:
  """(fx, fy, cx, cy) [4] float32 for square pixels and a horizontal field of view."""
  f = 0.5 * width / np.tan(0.5 * np.deg2rad(fov_degrees))
  return np.array([f, f, 0.5 * width, 0.5 * height], np.float32)


def ray_sphere_bounds(origins, directions, radius, xp=jnp):
  """Where unit-length rays enter and leave a sphere of ``radius`` at the origin.

  Args:
    origins, directions: [..., 3], directions of unit length.
    radius: scalar.

  Returns:
    (near, far, hit), each [...]. ``near`` is clipped at 0 (a camera inside
    the sphere starts at its origin). Rays that miss get near = far = the
    distance of closest approach, and ``hit`` False.
  """
  b = xp.sum(origins * directions, axis=-1)
  c = xp.sum(origins * origins, axis=-1) - radius**2
  disc = b * b - c
  hit = disc > 0
  root = xp.sqrt(xp.maximum(disc, 0.0))
  near = xp.maximum(-b - root, 0.0)
  far = xp.maximum(-b + root, near)
  return near, far, hit


def plucker(origins, directions, xp=jnp):
  """Plücker coordinates [..., 6] = (d, o x d) of rays: invariant to where on
  the ray the origin sits, so an encoder sees the ray, not the parametrisation."""
  return xp.concatenate([directions, xp.cross(origins, directions)], axis=-1)
