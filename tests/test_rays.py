"""Training rays: object-focused importance sampling keeps the likelihood estimate unbiased."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nerf_vae_jax import geometry
from nerf_vae_jax.models import objectives, ray_sampling


def _views(b=2, v=3, h=16, w=16, seed=0):
  """Plain backgrounds with a small coloured square: objects are ~6% of the pixels."""
  rng = np.random.default_rng(seed)
  images = np.broadcast_to(rng.integers(0, 256, (b, v, 1, 1, 3)), (b, v, h, w, 3)).astype(np.uint8).copy()
  images[:, :, 5:9, 6:10] = rng.integers(0, 256, (b, v, 1, 1, 3))
  pos = geometry.on_sphere(3.0, rng.uniform(0, 6, (b, v)), np.full((b, v), 0.5))
  c2w = geometry.look_at(pos, xp=np).astype(np.float32)
  intr = np.broadcast_to(geometry.intrinsics_from_fov(40.0, h, w), (b, v, 4))
  return jnp.asarray(images), jnp.asarray(intr), jnp.asarray(c2w)


def test_objectness_marks_the_square_not_the_background():
  images, _, _ = _views()
  obj = ray_sampling.objectness(images)
  expected = np.zeros(obj.shape, bool)
  expected[:, :, 5:9, 6:10] = True
  np.testing.assert_array_equal(np.asarray(obj) > 0, expected)


@pytest.mark.parametrize("object_fraction", [0.0, 0.5, 0.9])
def test_weighted_ray_sum_is_an_unbiased_estimate_of_the_whole_images(object_fraction):
  images, intr, c2w = _views()
  mask = jnp.array([[True, True, False], [True, False, False]])  # view 2 of scene 0, 1-2 of scene 1: padding
  f = lambda colours: jnp.sum(objectives.gaussian_log_likelihood(colours, 0.5, 0.1), -1)  # a per-pixel term
  exact = jnp.sum(f(images / 255.0) * mask[:, :, None, None], axis=(1, 2, 3))  # [B], real views only

  def estimate(key):
    rays = ray_sampling.sample_rays(images, intr, c2w, key, 64, mask, object_fraction)
    return jnp.sum(rays.weights * f(rays.colours), axis=1), rays.pixels

  est, pixels = jax.jit(jax.vmap(estimate))(jax.random.split(jax.random.PRNGKey(0), 2000))
  np.testing.assert_array_equal(pixels[0], [2 * 256, 256])
  mean, sem = est.mean(0), est.std(0) / np.sqrt(est.shape[0])
  assert np.all(np.abs(mean - exact) < 4 * sem + 1e-3 * np.abs(exact)), (mean, exact, sem)


def test_object_fraction_puts_that_share_of_rays_on_objects_and_none_on_padding():
  images, intr, c2w = _views()
  mask = jnp.array([[True, True, False], [True, True, True]])
  rays = ray_sampling.sample_rays(images, intr, c2w, jax.random.PRNGKey(1), 4096, mask, 0.5)
  # Rays whose colour is their view's square colour: half (object_fraction) plus the uniform share (~6%).
  square = np.asarray(images[:, :, 7, 7] / 255.0)  # [B, V, 3]
  hit = np.any(np.all(np.abs(np.asarray(rays.colours)[:, :, None] - square[:, None]) < 1e-6, -1), -1).mean(1)
  assert np.all(np.abs(hit - (0.5 + 0.5 * 16 / 256)) < 0.03), hit
  # No ray comes from scene 0's padding view (its origin is that camera's).
  origins = np.asarray(rays.origins[0])
  assert not np.any(np.all(np.abs(origins - np.asarray(c2w[0, 2, :3, 3])) < 1e-5, -1))


def test_draws_never_land_on_zero_probability_pixels_when_the_cdf_rounds_unevenly():
  """XLA's float32 cumulative sums can dip by an ulp inside a run of zeros (a padding view); a binary
  search for a draw just above the dip would stop inside the run, on a pixel of probability 0 (weight
  infinite). A hand-made jittery sum: every draw must land on a pixel that can be drawn."""
  p = jnp.array([[0.25, 0.25, 0.0, 0.0, 0.5]])
  dip = np.nextafter(np.float32(0.5), np.float32(0))
  cumsum = jnp.array([[0.25, 0.5, dip, 0.5, 1.0]], jnp.float32)  # index 2 dips below index 1
  for u in (0.5, float(dip) + 1e-9, 0.0, 0.25, 0.9999999):  # with one ray the draw is u x the total
    idx = int(ray_sampling.invert_cdf(p, jnp.array([[u]], jnp.float32), cumsum)[0, 0])
    assert float(p[0, idx]) > 0, (u, idx)
  # A well-rounded sum: the stratified inversion of p.
  idx = ray_sampling.invert_cdf(p, jnp.full((1, 4), 0.5))
  np.testing.assert_array_equal(idx, [[0, 1, 4, 4]])
