"""The autoregressive second-stage prior (models/cell_transformer.py): a proper density, sampled as it scores,
fitted to what it is shown, and saved whole."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nerf_vae_jax.models import cell_transformer as ct


def _random_prior(cells, dim, seed=0, width=8, layers=2, mixtures=3):
  """A prior whose cells depend on each other: the zero-initialised head gets random weights."""
  params = ct.init(jax.random.PRNGKey(seed), cells, dim, width, layers, mixtures)
  head = params["head"]
  params["head"] = {"w": 0.15 * jax.random.normal(jax.random.PRNGKey(seed + 1), head["w"].shape), "b": head["b"]}
  return ct.CellTransformer(params, jnp.asarray([0.3] * dim), jnp.asarray([1.5] * dim))


def test_the_density_integrates_to_one():
  """Two cells of one number: the density, summed over a fine grid of the plane, is 1."""
  prior = _random_prior(cells=2, dim=1)
  axis = np.linspace(-14.0, 14.0, 281)
  step = axis[1] - axis[0]
  a, b = np.meshgrid(axis, axis, indexing="ij")
  z = jnp.asarray(np.stack([a.ravel(), b.ravel()], -1)[:, :, None], jnp.float32)
  total = float(jnp.sum(jnp.exp(ct.log_prob(prior, z)))) * step * step
  assert total == pytest.approx(1.0, abs=2e-3)
  # And the cells do depend on each other: p(z1 | z0) moves with z0.
  lp = np.asarray(ct.log_prob(prior, z)).reshape(a.shape)
  conditional = lambda row: lp[row] - np.log(np.sum(np.exp(lp[row])) * step)
  assert np.max(np.abs(conditional(100) - conditional(180))) > 0.05


def test_sampling_one_cell_at_a_time_scores_as_the_one_pass_network():
  """The cached decoder draws cells whose running log-density equals the one-pass network's, and a key
  reproduces them."""
  prior = _random_prior(cells=6, dim=3)
  x, total = ct._decode(prior.params, jax.random.PRNGKey(3), 5)
  np.testing.assert_allclose(total, ct.standard_log_prob(prior.params, x), rtol=1e-4, atol=1e-3)
  z = ct.sample(prior, jax.random.PRNGKey(3), 5)
  assert z.shape == (5, 6, 3)
  np.testing.assert_array_equal(z, ct.sample(prior, jax.random.PRNGKey(3), 5))
  assert not np.allclose(z, ct.sample(prior, jax.random.PRNGKey(4), 5))
  # The standardisation is undone, and its Jacobian is in the density.
  np.testing.assert_allclose(z, x * 1.5 + 0.3, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(ct.log_prob(prior, z), total - 6 * 3 * math.log(1.5), rtol=1e-4, atol=1e-3)


def test_fitting_learns_what_cells_share(tmp_path):
  """Cells that copy a two-valued first cell: the fit beats a Gaussian of each number's own mean and variance
  on held-out latents, keeps its best point, samples the two modes, and survives a save and a load."""
  r = np.random.default_rng(0)
  first = r.choice([-2.0, 2.0], size=(1200, 1, 2)) + 0.1 * r.normal(size=(1200, 1, 2))
  z = np.concatenate([first, first + 0.1 * r.normal(size=(1200, 3, 2))], 1).astype(np.float32)  # [N, 4, 2]
  logs = []
  prior, info = ct.fit(z, width=16, layers=1, mixtures=2, steps=300, batch_size=64, held_out=200, eval_every=50,
                       learning_rate=3e-3, log=logs.append)
  assert len(logs) == 6 and info["held_out_nats"] < info["held_out_nats_at_init"]
  test = z[-200:]
  gaussian = np.mean(0.5 * np.log(2 * np.pi * z[:-200].var(0)) + 0.5 * (test - z[:-200].mean(0)) ** 2 / z[:-200].var(0))
  held_out = -float(jnp.mean(ct.log_prob(prior, jnp.asarray(test)))) / 8
  assert held_out == pytest.approx(info["held_out_nats"], abs=1e-3)
  assert held_out < gaussian - 1.0
  s = np.asarray(ct.sample(prior, jax.random.PRNGKey(0), 400))
  assert 0.2 < np.mean(s[:, 0, 0] > 0) < 0.8 and np.mean(np.abs(np.abs(s[:, 0, 0]) - 2.0) < 0.6) > 0.9
  assert np.mean(np.sign(s[:, 3]) == np.sign(s[:, 0])) > 0.9  # the later cells follow the first (0.5 if not)
  ct.save(str(tmp_path / "p.npz"), prior, steps=300)
  back, saved = ct.load(str(tmp_path / "p.npz"))
  assert saved == {"steps": 300}
  np.testing.assert_allclose(ct.log_prob(back, jnp.asarray(test)), ct.log_prob(prior, jnp.asarray(test)), rtol=1e-6)


def test_bad_sizes_are_named():
  with pytest.raises(ValueError, match="divisible by 4 heads"):
    ct.init(jax.random.PRNGKey(0), 4, 2, width=10)
  with pytest.raises(ValueError, match="more latents than held_out=256"):
    ct.fit(np.zeros((100, 4, 2)))
