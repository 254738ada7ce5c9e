"""The second-stage prior: its density, its samples, its fit, and the bounds under it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nerf_vae_jax.models import fitted_prior


def _dense_log_prob(p, z):
  cov = np.asarray(p.factors, np.float64) @ np.asarray(p.factors, np.float64).T + np.diag(np.asarray(p.diag, np.float64))
  x = np.asarray(z, np.float64).reshape(len(z), -1) - np.asarray(p.mean, np.float64)
  _, logdet = np.linalg.slogdet(cov)
  return -0.5 * (np.einsum("bi,ij,bj->b", x, np.linalg.inv(cov), x) + logdet + x.shape[1] * np.log(2 * np.pi))


def _random_prior(dim=12, rank=3, seed=0):
  r = np.random.default_rng(seed)
  return fitted_prior.FittedPrior(jnp.asarray(r.normal(size=dim), jnp.float32),
                                  jnp.asarray(r.normal(size=(dim, rank)), jnp.float32),
                                  jnp.asarray(r.uniform(0.2, 1.5, size=dim), jnp.float32))


def test_log_prob_is_the_dense_gaussian_density_and_standard_normal_without_factors():
  p = _random_prior()
  z = jax.random.normal(jax.random.PRNGKey(1), (5, 3, 4))  # [B, ...] flattened to 12
  np.testing.assert_allclose(fitted_prior.log_prob(p, z), _dense_log_prob(p, z), rtol=1e-4)
  std = fitted_prior.FittedPrior(jnp.zeros(12), jnp.zeros((12, 2)), jnp.ones(12))
  expected = -0.5 * np.sum(np.square(np.asarray(z).reshape(5, -1)), 1) - 6 * np.log(2 * np.pi)
  np.testing.assert_allclose(fitted_prior.log_prob(std, z), expected, rtol=1e-5)


def test_kl_from_a_diagonal_gaussian_is_the_dense_closed_form_and_the_monte_carlo_estimate():
  p = _random_prior(dim=6, rank=2)
  r = np.random.default_rng(1)
  mean, scale = r.normal(size=(3, 2, 3)), r.uniform(0.3, 1.5, size=(3, 2, 3))  # [B, ...] flattened to 6
  kl = fitted_prior.kl_from_diagonal(p, jnp.asarray(mean, jnp.float32), jnp.asarray(scale, jnp.float32))
  cov = np.asarray(p.factors, np.float64) @ np.asarray(p.factors, np.float64).T + np.diag(np.asarray(p.diag))
  inv = np.linalg.inv(cov)
  for i in range(3):
    m, s2 = mean[i].reshape(-1) - np.asarray(p.mean), np.square(scale[i].reshape(-1))
    dense = 0.5 * (np.sum(np.diag(inv) * s2) + m @ inv @ m - 6 + np.linalg.slogdet(cov)[1] - np.sum(np.log(s2)))
    assert float(kl[i]) == pytest.approx(dense, rel=1e-4)
  # E_q[log q - log p], by Monte Carlo, for the first scene.
  z = mean[0].reshape(-1) + scale[0].reshape(-1) * np.random.default_rng(2).normal(size=(200_000, 6))
  log_q = -0.5 * np.sum(np.square((z - mean[0].reshape(-1)) / scale[0].reshape(-1)) + np.log(2 * np.pi * np.square(
      scale[0].reshape(-1))), 1)
  assert float(kl[0]) == pytest.approx(float(np.mean(log_q - _dense_log_prob(p, z))), abs=0.02)
  # Zero when q is p: a prior without factors, and q its own diagonal Gaussian.
  diagonal = p._replace(factors=jnp.zeros_like(p.factors))
  np.testing.assert_allclose(fitted_prior.kl_from_diagonal(diagonal, p.mean[None], jnp.sqrt(p.diag)[None]), 0.0,
                             atol=1e-4)


def test_samples_have_the_priors_mean_and_covariance():
  p = _random_prior(dim=6, rank=2)
  z = np.asarray(fitted_prior.sample(p, jax.random.PRNGKey(0), 200_000), np.float64)
  cov = np.asarray(p.factors) @ np.asarray(p.factors).T + np.diag(np.asarray(p.diag))
  np.testing.assert_allclose(z.mean(0), p.mean, atol=0.02)
  np.testing.assert_allclose(np.cov(z.T), cov, atol=0.05 * np.abs(cov).max())


def test_fit_recovers_a_low_rank_gaussian_and_round_trips(tmp_path):
  truth = _random_prior(dim=10, rank=2, seed=3)
  z = np.asarray(fitted_prior.sample(truth, jax.random.PRNGKey(0), 100_000))
  p = fitted_prior.fit(z, rank=2)
  cov = lambda q: np.asarray(q.factors) @ np.asarray(q.factors).T + np.diag(np.asarray(q.diag))
  np.testing.assert_allclose(p.mean, truth.mean, atol=0.03)
  np.testing.assert_allclose(cov(p), cov(truth), atol=0.05 * np.abs(cov(truth)).max())
  # Factor analysis gives each coordinate its own variance (the truth's vary threefold); PPCA alone cannot.
  np.testing.assert_allclose(p.diag, truth.diag, rtol=0.1)
  ppca = fitted_prior.fit(z, rank=2, iterations=0)
  assert np.abs(cov(ppca) - cov(truth)).max() > 2 * np.abs(cov(p) - cov(truth)).max()
  assert 0.5 < fitted_prior.explained_variance(p) < 1.0
  # It scores its own data higher than a standard normal does.
  std = fitted_prior.FittedPrior(jnp.zeros(10), jnp.zeros((10, 2)), jnp.ones(10))
  assert float(jnp.mean(fitted_prior.log_prob(p, z[:1000]))) > float(jnp.mean(fitted_prior.log_prob(std, z[:1000])))
  fitted_prior.save(str(tmp_path / "p.npz"), p, step=7, rank=2)
  back, info = fitted_prior.load(str(tmp_path / "p.npz"))
  for a, b in zip(back, p):
    np.testing.assert_array_equal(a, b)
  assert info == {"step": 7, "rank": 2}
  with pytest.raises(ValueError, match="rank"):
    fitted_prior.fit(z[:5], rank=5)


def _expected_log_prob(p, means, variances):
  """E_q[log p2(z)] of q = N(means, diag(variances)), per posterior: log p2(mean) - tr(C^-1 diag(v)) / 2."""
  cov = np.asarray(p.factors, np.float64) @ np.asarray(p.factors, np.float64).T + np.diag(np.asarray(p.diag, np.float64))
  return _dense_log_prob(p, means) - 0.5 * np.asarray(variances, np.float64) @ np.diag(np.linalg.inv(cov))


def test_a_gaussian_fitted_to_whole_posteriors_matches_their_moments_and_scores_new_scenes_higher():
  # Scenes differ along 2 directions of 120 numbers; each posterior adds noise of variance 0.5-1.5 per number.
  r = np.random.default_rng(0)
  dim, rank, n = 120, 2, 150
  basis = r.normal(size=(dim, rank)) * 1.5
  scenes = lambda m: (r.normal(size=(m, rank)) @ basis.T, r.uniform(0.5, 1.5, size=(m, dim)))
  means, variances = scenes(n)
  p = fitted_prior.fit_posteriors(means, variances, rank)
  # Its marginal variances are the aggregate posterior's: Var(means) + E[variances].
  marginal = np.sum(np.square(np.asarray(p.factors)), 1) + np.asarray(p.diag)
  np.testing.assert_allclose(marginal, means.var(0) + variances.mean(0), rtol=1e-3)
  np.testing.assert_allclose(p.mean, means.mean(0), atol=1e-5)
  # With no posterior noise it is the factor analysis of the means.
  for a, b in zip(fitted_prior.fit_posteriors(means, np.zeros_like(means), rank), fitted_prior.fit(means, rank)):
    np.testing.assert_allclose(a, b, rtol=1e-6)
  # One sample per scene: with 150 scenes of 120 numbers the factors also fit the noise's chance directions,
  # so new scenes' posteriors score lower in expectation.
  one_sample = fitted_prior.fit(means + np.sqrt(variances) * r.normal(size=means.shape), rank)
  new_means, new_variances = scenes(500)
  whole = _expected_log_prob(p, new_means, new_variances).mean()
  sampled = _expected_log_prob(one_sample, new_means, new_variances).mean()
  assert whole > sampled + 1.0, (whole, sampled)
  with pytest.raises(ValueError, match="non-negative variances of one shape"):
    fitted_prior.fit_posteriors(means, variances[:, :5], rank)


def test_bounds_under_a_fitted_prior_swap_only_the_priors_density(tiny_data_dir):
  """The weights under p2 are log p(x|z) + log p2(z) - log q. With p2 = N(0, I) they are the independent
  prior's own weights exactly; with p2 = N(1, I) every sample scores log N(z; 1, I) - log N(z; 0, I)
  = sum(z) - L/2 lower (L = 1,024 numbers here), far below; and every IWAE bound is at least its ELBO."""
  from conftest import small_config
  from nerf_vae_jax.data import source
  from nerf_vae_jax.evaluation import protocol, second_stage
  from nerf_vae_jax.train import run_dir, update
  from nerf_vae_jax import batching
  config = small_config(tiny_data_dir, 1)
  config.model.prior = "independent"
  model, spec = run_dir.make_model(config)
  init = jax.jit(lambda example, key: update.init_state(model, update.make_optimizer(config.train), example, key))
  state = init(batching.example(batching.for_config(config, spec.height, spec.width)), jax.random.PRNGKey(0))
  size = int(np.prod(model.latent_shape))
  scenes = [source.SceneSource("shape_scenes/tiny", "test", tiny_data_dir)[i] for i in range(2)]
  settings = protocol.Settings(num_samples=3, num_rays=32)
  for shift in (0.0, 1.0):
    p2 = fitted_prior.FittedPrior(jnp.full(size, shift), jnp.zeros((size, 2)), jnp.ones(size))
    b = second_stage.bounds(model, state["params"], p2, scenes, settings)
    assert all(np.isfinite(v) for v in b.values())
    assert b["iwae_model"] >= b["elbo_model"] - 1e-6 and b["iwae_fitted"] >= b["elbo_fitted"] - 1e-6
    pixels = spec.height * spec.width * (scenes[0]["images"].shape[0] - protocol.CONTEXT_CANDIDATES)  # per scene
    if shift:
      assert b["elbo_fitted"] < b["elbo_model"] - 0.25 * size / pixels
    else:
      assert b["iwae_fitted"] == pytest.approx(b["iwae_model"], abs=1e-5)
      assert b["elbo_fitted"] == pytest.approx(b["elbo_model"], abs=1e-5)


_OPENBLAS_THREADS = """
import experiments  # an entry point's first import
import ctypes, glob, os, scipy, jax.numpy as jnp
jnp.linalg.cholesky(jnp.eye(2)).block_until_ready()  # JAX's first LAPACK call loads scipy's OpenBLAS
libs = glob.glob(os.path.join(os.path.dirname(scipy.__file__), os.pardir, "scipy.libs", "libscipy_openblas*.so"))
assert len(libs) == 1, libs  # the pinned scipy's wheel layout
print(os.environ.get("OPENBLAS_NUM_THREADS"), ctypes.CDLL(libs[0]).scipy_openblas_get_num_threads())
"""


@pytest.mark.parametrize("exported", [None, "2"])
def test_the_lapack_behind_the_priors_solves_runs_on_one_thread_unless_the_user_says(exported):
  """OpenBLAS's own threads waited for cores XLA held: the factor prior's 128 x 128 solves took 8-20 ms instead
  of 0.1 ms (nerf_vae_jax/__init__.py). The entry points make it one thread; an exported value wins."""
  import os
  import subprocess
  import sys
  env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
  if exported:
    env["OPENBLAS_NUM_THREADS"] = exported
  r = subprocess.run([sys.executable, "-c", _OPENBLAS_THREADS], env=env, capture_output=True, text=True,
                     cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert r.returncode == 0, r.stderr[-2000:]
  want = exported or "1"
  assert r.stdout.split() == [want, want]
