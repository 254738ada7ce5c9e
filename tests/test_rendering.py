"""Volume rendering against closed forms; resampling against its weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nerf_vae_jax import rendering


def test_homogeneous_medium_closed_form():
  sigma, length, s = 0.7, 2.0, 64
  t = jnp.linspace(1.0, 1.0 + length, s + 1)
  red, blue = jnp.array([1.0, 0.0, 0.0]), jnp.array([0.0, 0.0, 1.0])
  out = rendering.volume_render(jnp.full(s, sigma), jnp.tile(red, (s, 1)), t, blue)
  opacity = 1 - np.exp(-sigma * length)
  assert float(out["acc"]) == pytest.approx(opacity, rel=1e-5)
  np.testing.assert_allclose(out["rgb"], opacity * red + (1 - opacity) * blue, rtol=1e-5)
  # Expected termination depth of an exponential distribution truncated to [1, 1 + L].
  expected = 1.0 + 1 / sigma - length * np.exp(-sigma * length) / opacity
  assert float(out["depth"]) == pytest.approx(expected, rel=2e-3)  # bin midpoints: O(1/S^2)


def test_opaque_thin_shell_gives_its_depth():
  t = jnp.linspace(0.0, 4.0, 401)
  density = jnp.zeros(400).at[250].set(1e4)  # bin [2.5, 2.51]
  rgb = jnp.tile(jnp.array([0.2, 0.9, 0.4]), (400, 1))
  out = rendering.volume_render(density, rgb, t, jnp.zeros(3))
  assert float(out["acc"]) == pytest.approx(1.0, abs=1e-6)
  assert float(out["depth"]) == pytest.approx(2.505, abs=1e-6)
  np.testing.assert_allclose(out["rgb"], [0.2, 0.9, 0.4], atol=1e-6)


def test_zero_density_returns_the_background_exactly():
  key = jax.random.PRNGKey(0)
  t = rendering.stratified_edges(key, jnp.full((5,), 1.0), jnp.full((5,), 3.0), 16)
  bg = jnp.array([0.3, 0.6, 0.1])
  out = rendering.volume_render(jnp.zeros((5, 16)), jax.random.uniform(key, (5, 16, 3)), t, bg)
  assert (out["rgb"] == bg).all() and (out["acc"] == 0).all() and (out["depth"] == 0).all()


def test_weights_sum_to_at_most_one_and_are_finite():
  key1, key2, key3 = jax.random.split(jax.random.PRNGKey(1), 3)
  density = jnp.exp(3 * jax.random.normal(key1, (1000, 32)))
  t = rendering.stratified_edges(key2, jnp.zeros(1000), jnp.full(1000, 5.0), 32)
  out = rendering.volume_render(density, jax.random.uniform(key3, (1000, 32, 3)), t, jnp.ones(3))
  assert jnp.isfinite(out["weights"]).all()
  assert (out["weights"] >= 0).all() and (out["acc"] <= 1 + 1e-6).all()


def test_stratified_edges_are_ordered_and_span_near_far():
  t = rendering.stratified_edges(jax.random.PRNGKey(2), jnp.array([1.0, 2.0]), jnp.array([3.0, 2.5]), 8)
  assert (jnp.diff(t, axis=-1) > 0).all()
  np.testing.assert_allclose(t[:, 0], [1.0, 2.0])
  np.testing.assert_allclose(t[:, -1], [3.0, 2.5])


def test_inverse_cdf_edges_are_the_closed_form_quantiles():
  # Evenly spaced u (not randomized) through the CDF of weights 0.1, 0.6, 0.3 over [0, 1), [1, 2), [2, 3):
  # each edge is the piecewise-linear inverse, computed here without the function's code.
  t = jnp.array([[0.0, 1.0, 2.0, 3.0]])
  new = np.asarray(rendering.resample_edges(None, t, jnp.array([[0.1, 0.6, 0.3]]), 9, randomized=False,
                                            padding=0.0))[0]
  u = np.concatenate([[0.0], (np.arange(1, 9) + 0.5) / 10, [1.0]])
  expected = np.interp(u, [0.0, 0.1, 0.7, 1.0], [0.0, 1.0, 2.0, 3.0])
  np.testing.assert_allclose(new, expected, atol=1e-6)
  assert (np.diff(new) > 0).all()


def test_inverse_cdf_resampling_follows_the_weights():
  # Coarse weights 0.1, 0.6, 0.3 over bins [0,1), [1,2), [2,3) (no padding):
  # the new edges must fall in each bin in proportion, tested over many rays.
  rays = 4000
  t = jnp.tile(jnp.array([0.0, 1.0, 2.0, 3.0]), (rays, 1))
  w = jnp.tile(jnp.array([0.1, 0.6, 0.3]), (rays, 1))
  new = rendering.resample_edges(jax.random.PRNGKey(3), t, w, 63, padding=0.0)
  assert (jnp.diff(new, axis=-1) >= 0).all()
  interior = np.asarray(new[:, 1:-1]).ravel()
  frac = np.histogram(interior, bins=[0, 1, 2, 3])[0] / interior.size
  # The end edges are pinned to near/far, so the interior quantiles are
  # uniform over [1/64, 63/64] of the CDF (0, 0.1, 0.7, 1).
  lo, hi = 1 / 64, 63 / 64
  expected = np.diff(np.clip([0.0, 0.1, 0.7, 1.0], lo, hi)) / (hi - lo)
  np.testing.assert_allclose(frac, expected, atol=0.005)
  # Within a bin the CDF is linear: samples are uniform inside it.
  inside = interior[(interior >= 1) & (interior < 2)] - 1
  assert abs(inside.mean() - 0.5) < 0.01


@pytest.mark.parametrize("frequencies, tolerance", [(1, 1e-6), (6, 5e-5), (10, 2e-3)])
def test_positional_encoding_is_sin_and_cos_of_each_octave(frequencies, tolerance):
  """The double-angle recurrence against float64 sin(2^k pi x) and cos(2^k pi x), in NeRF's layout: the input,
  then the sines (octave by octave, each over the D coordinates), then the cosines; and its gradient."""
  x = jax.random.uniform(jax.random.PRNGKey(0), (4096, 3), minval=-1.5, maxval=1.5)
  scaled = (np.asarray(x, np.float64)[:, None, :] * np.pi * 2.0 ** np.arange(frequencies)[:, None]).reshape(4096, -1)
  want = np.concatenate([np.asarray(x, np.float64), np.sin(scaled), np.cos(scaled)], -1)
  np.testing.assert_allclose(rendering.positional_encoding(x, frequencies), want, atol=tolerance)
  np.testing.assert_array_equal(rendering.positional_encoding(x, frequencies, include_input=False),
                                rendering.positional_encoding(x, frequencies)[:, 3:])
  # d/dx of sum(sin 2^k pi x) = sum(2^k pi cos 2^k pi x): through the recurrence, the same derivative.
  grad = jax.grad(lambda x: jnp.sum(rendering.positional_encoding(x, frequencies)[:, 3:3 + 3 * frequencies]))(x)
  want_grad = (np.pi * 2.0 ** np.arange(frequencies)[:, None] * np.cos(scaled.reshape(4096, frequencies, 3))).sum(1)
  np.testing.assert_allclose(grad, want_grad, atol=tolerance * 2.0 ** frequencies * np.pi)
