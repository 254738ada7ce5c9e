"""A latent grid in the world: lifting image features onto it, and reading it at 3-D points.

The ``grid`` latent is G^3 cells on a regular grid filling the cube
[-R, R]^3 around the scene (R = the scene radius), each with a D-dimensional
Gaussian latent. Every context view lifts its encoder feature map onto the
cells: each cell centre is projected into the view (``geometry.project``) and
the feature map is sampled there, so a view's tokens have positions in the
frame all views share, and the per-view posteriors of a cell can be averaged
(the reference's combination). The scene function reads the grid at a point
by trilinear interpolation of the 8 cells around it.

Cells are ordered (ix, iy, iz), flat index (ix G + iy) G + iz; cell i has its
centre at ((i + 0.5) / G * 2 - 1) R on each axis.
"""

from __future__ import annotations

import jax.numpy as jnp

from nerf_vae_jax import geometry


def cell_centres(grid_size: int, radius: float):
  """World positions [G^3, 3] of the cell centres."""
  c = ((jnp.arange(grid_size) + 0.5) / grid_size * 2.0 - 1.0) * radius
  x, y, z = jnp.meshgrid(c, c, c, indexing="ij")
  return jnp.stack([x, y, z], axis=-1).reshape(-1, 3)


def bilinear(fmap, x, y):
  """Samples fmap [h, w, C] at continuous coordinates x (column), y (row) [...],
  cell (i, j) having its centre at (j, i); borders are clamped. Returns [..., C]."""
  h, w, _ = fmap.shape
  x0, y0 = jnp.floor(x), jnp.floor(y)
  fx, fy = (x - x0)[..., None], (y - y0)[..., None]
  xi = lambda a: jnp.clip(a, 0, w - 1).astype(jnp.int32)
  yi = lambda a: jnp.clip(a, 0, h - 1).astype(jnp.int32)
  at = lambda yy, xx: fmap[yi(yy), xi(xx)]
  return ((1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1))
          + fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1)))


def lift(fmap, intrinsics, cam_to_world, height: int, width: int, cells):
  """One view's features at the cells it sees.

  Args:
    fmap: [h, w, C], the encoder's feature map of a view of height x width
      pixels (each feature cell covers height/h x width/w pixels).
    intrinsics [4], cam_to_world [4, 4]: the view's camera.
    cells: [N, 3] world points.

  Returns:
    features [N, C]; camera-frame unit directions to the cells [N, 3];
    depths (along the viewing axis) [N]; visible bool [N] (in front of the
    camera and inside the image).
  """
  xy, depth = geometry.project(cells, intrinsics[None], cam_to_world[None])
  h, w, _ = fmap.shape
  feats = bilinear(fmap, xy[:, 0] * (w / width) - 0.5, xy[:, 1] * (h / height) - 0.5)
  visible = (depth > 0) & (xy[:, 0] >= 0) & (xy[:, 0] <= width) & (xy[:, 1] >= 0) & (xy[:, 1] <= height)
  rel = cells - cam_to_world[:3, 3]
  cam_dir = rel @ cam_to_world[:3, :3]  # R^T (p - o): camera frame
  cam_dir = cam_dir / jnp.linalg.norm(cam_dir, axis=-1, keepdims=True)
  return feats, cam_dir, depth, visible


def trilinear(latent, points, grid_size: int, radius: float):
  """Reads latent grids [B, G^3, D] at points [B, ..., 3] -> [B, ..., D] (clamped at the borders)."""
  b, g = latent.shape[0], grid_size
  q = (points / radius + 1.0) * 0.5 * g - 0.5  # continuous cell coordinates
  q0 = jnp.floor(q)
  f = q - q0
  lead = points.shape[1:-1]
  flat = points.reshape(b, -1, 3)
  q0, f = q0.reshape(flat.shape), f.reshape(flat.shape)
  out = 0.0
  for dx in (0, 1):
    for dy in (0, 1):
      for dz in (0, 1):
        i = jnp.clip(q0 + jnp.array([dx, dy, dz], q0.dtype), 0, g - 1).astype(jnp.int32)
        idx = (i[..., 0] * g + i[..., 1]) * g + i[..., 2]  # [B, P]
        wgt = jnp.prod(jnp.where(jnp.array([dx, dy, dz], bool), f, 1.0 - f), axis=-1)
        out = out + wgt[..., None] * jnp.take_along_axis(latent, idx[..., None], axis=1)
  return out.reshape((b,) + lead + (latent.shape[-1],))
