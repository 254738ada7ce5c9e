"""The grid latent: reading it at points, lifting a view's features onto it, and
that what a view says about a cell moves with the camera."""

import jax
import jax.numpy as jnp
import numpy as np

from nerf_vae_jax import geometry
from nerf_vae_jax.models import grid

G, R = 4, 1.0


def test_trilinear_reads_cell_values_at_centres_and_blends_between():
  latent = jax.random.normal(jax.random.PRNGKey(0), (2, G ** 3, 5))
  centres = grid.cell_centres(G, R)
  at_centres = grid.trilinear(latent, jnp.broadcast_to(centres, (2,) + centres.shape), G, R)
  np.testing.assert_allclose(at_centres, latent, atol=1e-6)
  a, b = (0 * G + 1) * G + 2, (1 * G + 1) * G + 2  # cells (0, 1, 2) and (1, 1, 2): neighbours along x
  mid = 0.5 * (centres[a] + centres[b])
  np.testing.assert_allclose(grid.trilinear(latent, mid[None, None].repeat(2, 0), G, R)[:, 0],
                             0.5 * (latent[:, a] + latent[:, b]), atol=1e-6)


def _camera(azimuth):
  pos = geometry.on_sphere(3.0, azimuth, np.deg2rad(30.0))
  return (geometry.intrinsics_from_fov(40.0, 32, 32), geometry.look_at(pos, xp=np).astype(np.float32))


def test_lift_samples_the_feature_map_where_each_cell_projects():
  intr, c2w = _camera(0.3)
  h = w = 8  # feature cells of 4 x 4 pixels
  fmap = jnp.stack(jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                                indexing="ij"), -1)  # feature = (row, column) of the feature cell
  cells = grid.cell_centres(G, R)
  feats, _, depth, visible = grid.lift(fmap, intr, c2w, 32, 32, cells)
  xy, z = geometry.project(cells, intr, c2w)
  in_image = np.all((xy >= 0) & (xy <= 32), axis=-1) & (np.asarray(z) > 0)
  np.testing.assert_array_equal(visible, in_image)
  assert in_image.mean() > 0.8 and np.allclose(depth, z)
  # Bilinear interpolation of a linear ramp is exact away from the clamped border.
  inner = np.all((xy > 2) & (xy < 30), axis=-1)
  np.testing.assert_allclose(feats[inner], (xy[inner][:, ::-1] / 4 - 0.5), atol=1e-4)


def test_a_views_tokens_move_with_its_camera():
  """Turning the camera 90 degrees about the world z axis turns what it says
  about the cells with it: the cell at (x, y, z) now gets what the cell at
  (y, -x, z) got (the same feature, seen from the same camera-frame direction
  and depth)."""
  rng = np.random.default_rng(0)
  fmap = jnp.asarray(rng.normal(size=(8, 8, 3)), jnp.float32)
  cells = grid.cell_centres(G, R)
  out = [grid.lift(fmap, *_camera(a), 32, 32, cells) for a in (0.3, 0.3 + np.pi / 2)]
  flat = lambda i, j, k: (i * G + j) * G + k
  # Cell (i, j, k) is at (c_i, c_j, c_k) with c_{G-1-i} = -c_i: (y, -x, z) is cell (j, G-1-i, k).
  source = np.array([flat(j, G - 1 - i, k) for i in range(G) for j in range(G) for k in range(G)])
  for a, b in zip(out[0], out[1]):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a)[source], atol=1e-4)
