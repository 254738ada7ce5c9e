"""The hierarchical prior of the grid latent: a normalised density, each level's KL, bounds that hold, and
samples of the right shape that a key reproduces."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import perturbed

from experiments.configs import shape_scenes
from nerf_vae_jax import batching
from nerf_vae_jax import errors
from nerf_vae_jax.data import source
from nerf_vae_jax.evaluation import protocol
from nerf_vae_jax.models import fitted_prior, grid, nerf_vae, objectives, posterior, priors, ray_sampling


def _small(prior="hierarchical", grid_size=2, latent_dim=2, top_dim=2, noise=0.3, prior_net="per_cell",
           depth_lift=False, **overrides):
  """A small grid model of the tiny config and perturbed parameters (the zero-initialised heads made non-zero,
  so that p(cells | z0) and q depend on their inputs); without the depth-aware lift unless asked (the tests
  here pin down the priors, on the cells a view sees)."""
  config = shape_scenes.get_config("tiny")
  config.model.update(prior=prior, grid_size=grid_size, latent_dim=latent_dim, top_dim=top_dim, prior_channels=8,
                      prior_net=prior_net, depth_lift=depth_lift,
                      encoder_channels=(8, 16), mlp_width=16, mlp_depth=2, num_coarse=8, num_fine=8, **overrides)
  config.data.max_context = 2
  model = nerf_vae.from_config(config.model, 1.0)
  example = batching.example(batching.for_config(config, 32, 32))
  init = jax.jit(lambda k: model.init(k, example, jnp.zeros((1, 4, 3)), jnp.ones((1, 4, 3)) / np.sqrt(3), k))
  return model, perturbed(init(jax.random.PRNGKey(0)), noise)


@pytest.mark.parametrize("net", priors.NETS)
def test_hierarchical_log_prior_is_normalised(net):
  """E_r[p(z0, cells) / r(z0, cells)] = 1 for a proposal r a little wider than p at every level."""
  model, params = _small(prior_net=net, top_dim=24 if net == "slots" else 2)
  n, widen = 40_000, 1.25
  k_top, k_cells = jax.random.split(jax.random.PRNGKey(2))
  top = widen * jax.random.normal(k_top, (n, model.top_dim))
  mean, scale = nerf_vae.cell_prior(model, params, top)
  cells = mean + widen * scale * jax.random.normal(k_cells, mean.shape)
  log_r = (posterior.log_normal(top, jnp.zeros_like(top), widen * jnp.ones_like(top))
           + posterior.log_normal(cells, mean, widen * scale))
  ratio = jnp.exp(nerf_vae.log_prior(model, params, cells, top) - log_r)
  assert cells.shape == (n,) + model.latent_shape
  assert float(jnp.mean(ratio)) == pytest.approx(1.0, abs=4 * float(jnp.std(ratio)) / np.sqrt(n) + 1e-3)
  # The scales p(cells | z0) gives do depend on z0 (the test is not of N(0, I) alone).
  assert float(jnp.std(scale[:, 0])) > 1e-3 and float(jnp.std(mean[:, 0])) > 1e-3


def test_kl_of_each_level_matches_monte_carlo():
  # Between two diagonal Gaussians (the cells' level), and 0 where they are equal.
  m1, s1 = jnp.array([[0.5, -1.0, 0.2]]), jnp.array([[0.3, 1.5, 0.9]])
  m2, s2 = jnp.array([[0.1, 0.4, -0.3]]), jnp.array([[0.6, 1.1, 2.0]])
  z = m1 + s1 * jax.random.normal(jax.random.PRNGKey(0), (200_000, 3))
  mc = posterior.log_normal(z, m1, s1) - posterior.log_normal(z, m2, s2)
  assert float(posterior.kl_normal(m1, s1, m2, s2)[0]) == pytest.approx(float(jnp.mean(mc)), abs=0.01)
  assert float(posterior.kl_normal(m1, s1, m1, s1)[0]) == 0.0
  np.testing.assert_allclose(posterior.kl_normal(m1, s1, jnp.zeros(3), jnp.ones(3)),
                             posterior.kl_to_standard_normal(m1, s1), rtol=1e-6)
  # The whole hierarchical KL: sample_posterior's estimate (closed form per level at a sampled z0) and
  # -log p/q of the same samples estimate the same KL(q(z0, cells) || p(z0, cells)).
  model, params = _small()
  q = posterior.Posterior(mean=0.4 * jax.random.normal(jax.random.PRNGKey(3), (1,) + model.latent_shape),
                          scale=jnp.full((1,) + model.latent_shape, 0.5), top_mean=jnp.array([[0.5, -0.3]]),
                          top_scale=jnp.array([[0.4, 0.8]]), seen=jnp.array([[True] * 6 + [False] * 2]))
  s = jax.vmap(lambda k: nerf_vae.sample_posterior(model, params, q, k))(jax.random.split(jax.random.PRNGKey(4), 40_000))
  kl, log_ratio = s.kl, s.log_ratio
  assert float(jnp.mean(kl)) == pytest.approx(float(-jnp.mean(log_ratio)), rel=0.02)
  assert float(jnp.std(kl)) < float(jnp.std(log_ratio))  # the closed form per level has less variance
  kl_top = float(posterior.kl_to_standard_normal(q.top_mean, q.top_scale)[0])
  assert float(jnp.mean(kl)) > kl_top > 0.0


def test_cells_no_view_sees_follow_the_prior_given_z0():
  model, params = _small()
  shape = (1,) + model.latent_shape
  q = posterior.Posterior(mean=jnp.full(shape, 3.0), scale=jnp.full(shape, 0.1), top_mean=jnp.array([[0.2, 0.1]]),
                          top_scale=jnp.array([[1e-4, 1e-4]]), seen=jnp.zeros((1, shape[1]), bool))
  s = nerf_vae.sample_posterior(model, params, q, jax.random.PRNGKey(0))
  z, kl = s.z, s.kl
  kl_top = posterior.kl_to_standard_normal(q.top_mean, q.top_scale)
  np.testing.assert_allclose(kl, kl_top, rtol=1e-5)  # no cell is seen: only z0 costs anything
  prior_mean, _ = nerf_vae.cell_prior(model, params, q.top_mean)
  np.testing.assert_allclose(nerf_vae.posterior_latent(model, params, q), prior_mean, rtol=1e-6)
  assert float(jnp.max(jnp.abs(z - 3.0))) > 1.0  # the views' (unused) Gaussian is ignored
  # Every cell seen: the latent to render is the views' mean, whatever z0.
  seen = q._replace(seen=jnp.ones_like(q.seen))
  np.testing.assert_allclose(nerf_vae.posterior_latent(model, params, seen), q.mean)


def test_a_run_saved_with_a_retired_study_option_loads_at_its_default_and_names_the_commit_otherwise():
  """Runs saved while ``model.cells_from_views`` existed keep loading (it was True unless a study changed it);
  one that trained with it off cannot be rebuilt here, and the error says which commit can."""
  config = shape_scenes.get_config("tiny").model
  assert "cells_from_views" not in config
  config.cells_from_views = True
  assert nerf_vae.from_config(config, 1.0) == nerf_vae.from_config(shape_scenes.get_config("tiny").model, 1.0)
  config.cells_from_views = False
  with pytest.raises(errors.ConfigError, match=f"cells_from_views=False.*check out commit {nerf_vae.RETIRED_AT}"):
    nerf_vae.from_config(config, 1.0)


@pytest.mark.parametrize("prior", ["independent", "hierarchical", "factor"])
def test_prior_samples_have_the_latents_shape_and_a_key_reproduces_them(prior):
  model, params = _small(prior)
  sample = jax.jit(lambda k: nerf_vae.sample_prior(model, params, k, 5))
  a, b, c = sample(jax.random.PRNGKey(0)), sample(jax.random.PRNGKey(0)), sample(jax.random.PRNGKey(1))
  assert a.shape == (5,) + model.latent_shape
  np.testing.assert_array_equal(a, b)
  assert float(jnp.max(jnp.abs(a - c))) > 0.1
  cold = nerf_vae.sample_prior(model, params, jax.random.PRNGKey(0), 5, temperature=0.0)
  if prior == "independent":
    np.testing.assert_array_equal(cold, 0.0)
  elif prior == "factor":  # the prior's mean
    mean = nerf_vae.prior_density(model, params).mean.reshape(model.latent_shape)
    assert float(jnp.max(jnp.abs(mean))) > 0.1
    np.testing.assert_allclose(cold, jnp.broadcast_to(mean, cold.shape), rtol=1e-6)
  else:  # the cells' means at z0 = 0, the same for every sample
    np.testing.assert_allclose(cold, jnp.broadcast_to(nerf_vae.cell_prior(model, params, jnp.zeros((1, 2)))[0],
                                                      cold.shape), rtol=1e-6)


def test_elbo_is_below_the_iwae_bound_which_tightens_with_samples(tiny_data_dir):
  model, params = _small(latent_dim=4, noise=0.05)
  src = source.SceneSource("shape_scenes/tiny", "test", tiny_data_dir)
  batch = protocol.context_batch([src[i] for i in range(2)], 1)
  rays = ray_sampling.target_rays(batch, jax.random.PRNGKey(5), 256)

  ll, log_ratio, kl = jax.jit(lambda k: objectives.posterior_samples(
      model, params, nerf_vae.infer(model, params, batch), rays, k, num_samples=128,
      likelihood_scale=0.1))(jax.random.PRNGKey(6))
  # Bounds with S samples from disjoint groups of the 128, averaged over the groups (bounds in expectation).
  iwae = {s: np.mean([objectives.iwae(ll[g:g + s], log_ratio[g:g + s]) for g in range(0, 128, s)], 0)
          for s in (1, 4, 16)}
  elbo = np.mean(ll - kl, 0)
  assert np.all(elbo < iwae[4]) and np.all(elbo < iwae[16]), (elbo, iwae)
  assert np.all(iwae[1] < iwae[4]) and np.all(iwae[4] < iwae[16]), iwae
  # With one sample the IWAE bound is log p(x | z) + log p(z) - log q(z): the ELBO up to the KL's estimator.
  np.testing.assert_allclose(iwae[1], np.mean(ll + log_ratio, 0), rtol=1e-5)


def test_hierarchical_prior_needs_a_power_of_two_grid():
  with pytest.raises(errors.ConfigError, match="power of two"):
    _small(grid_size=6)
  with pytest.raises(errors.ConfigError, match="background_token"):
    _small(background_token=True)


def test_training_kl_is_beta_kl_whose_prior_side_learns_at_the_full_rate():
  model, params = _small()
  shape = (1,) + model.latent_shape
  q = posterior.Posterior(mean=0.3 * jnp.ones(shape), scale=jnp.full(shape, 0.6), top_mean=jnp.array([[0.2, -0.1]]),
                          top_scale=jnp.array([[0.5, 0.7]]), seen=jnp.array([[True] * 5 + [False] * 3]))
  key = jax.random.PRNGKey(3)
  floats = (q.mean, q.scale, q.top_mean, q.top_scale)
  grads = lambda field, beta, balance=True: jax.grad(
      lambda p, f: jnp.sum(getattr(nerf_vae.sample_posterior(model, p, posterior.Posterior(*f, q.seen), key,
                                                              beta=beta, balance=balance), field)),
      argnums=(0, 1))(params, floats)
  s = nerf_vae.sample_posterior(model, params, q, key, beta=0.25)
  np.testing.assert_allclose(s.weighted_kl, 0.25 * s.kl, rtol=1e-5)
  (p_kl, q_kl), (p_w, q_w), (p_1, q_1) = grads("kl", 1.0), grads("weighted_kl", 0.25), grads("weighted_kl", 1.0)
  close = lambda a, b: jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6), a, b)
  close(p_1, p_kl)  # beta = 1: the ELBO's gradient
  close(q_1, q_kl)
  close(p_w["params"]["cell_prior_net"], p_kl["params"]["cell_prior_net"])  # the prior: unweighted
  close(q_w[:2], (0.25 * q_kl[0], 0.25 * q_kl[1]))  # the cells' posterior: beta x
  assert float(jnp.max(jnp.abs(q_kl[0]))) > 1e-3
  p_off, q_off = grads("weighted_kl", 0.25, balance=False)  # unbalanced: beta x everything
  close((p_off, q_off), jax.tree.map(lambda g: 0.25 * g, (p_kl, q_kl)))


def test_the_factor_prior_is_the_models_own_density_and_learns_at_the_full_rate(tiny_data_dir):
  """model.prior=factor: the KL is the closed form against N(mean, F F^T + diag(d)), the importance ratio uses
  its density, cells no view sees follow its marginal, and its parameters take the whole KL's gradient while
  the posterior takes beta x it; a whole training loss has finite gradients that reach the factors."""
  model, params = _small(prior="factor", prior_rank=3)
  p = nerf_vae.prior_density(model, params)
  assert p.factors.shape == (model.grid_size ** 3 * model.latent_dim, 3)
  shape = (1,) + model.latent_shape
  q = posterior.Posterior(mean=0.3 * jax.random.normal(jax.random.PRNGKey(2), shape), scale=jnp.full(shape, 0.6))
  key, beta = jax.random.PRNGKey(3), 0.25
  s = nerf_vae.sample_posterior(model, params, q, key, beta=beta)
  z = nerf_vae.sample_latent(key, q.mean, q.scale)
  np.testing.assert_allclose(s.z, z)
  np.testing.assert_allclose(s.kl, fitted_prior.kl_from_diagonal(p, q.mean, q.scale), rtol=1e-6)
  np.testing.assert_allclose(s.log_ratio, fitted_prior.log_prob(p, z) - posterior.log_normal(z, q.mean, q.scale),
                             rtol=1e-5)
  np.testing.assert_allclose(s.weighted_kl, beta * s.kl, rtol=1e-5)
  src = source.SceneSource("shape_scenes/tiny", "test", tiny_data_dir)
  batch = batching.model_inputs(protocol.context_batch([src[0]], 1))
  independent = model.clone(prior="independent")

  @jax.jit  # one compile for the rest
  def rest(pr):
    grads = lambda field, b: jax.grad(lambda pr, f: jnp.sum(getattr(nerf_vae.sample_posterior(
        model, pr, posterior.Posterior(*f), key, beta=b), field)), argnums=(0, 1))(pr, (q.mean, q.scale))
    no_view = dict(batch, context_mask=jnp.zeros_like(batch["context_mask"]))
    loss = lambda x: objectives.elbo_loss(model, x, batch, key, num_rays=32, likelihood_scale=0.1, beta=0.0)[0]
    return (grads("kl", 1.0), grads("weighted_kl", beta), nerf_vae.infer(model, pr, batch).mean,
            nerf_vae.infer(independent, pr, batch).mean, nerf_vae.infer(model, pr, no_view), jax.grad(loss)(pr))

  ((p_kl, q_kl), (p_w, q_w), q_views, q_independent, q_none, g) = rest(params)
  close = lambda a, b: jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6), a, b)
  close(p_w["params"]["latent_prior"], p_kl["params"]["latent_prior"])  # the prior: unweighted
  close(q_w, (beta * q_kl[0], beta * q_kl[1]))  # the posterior: beta x
  assert float(jnp.max(jnp.abs(p_kl["params"]["latent_prior"]["factors"]))) > 1e-4
  # The views' posterior: the views' own where they see (here every cell), and where no view sees (here: no
  # real view), the prior's marginal mean and scale, not N(0, I).
  np.testing.assert_allclose(q_views, q_independent)
  np.testing.assert_allclose(q_none.mean[0], p.mean.reshape(model.latent_shape), rtol=1e-6)
  np.testing.assert_allclose(q_none.scale[0], fitted_prior.marginal_scale(p).reshape(model.latent_shape), rtol=1e-6)
  assert float(jnp.max(jnp.abs(q_none.scale - 1.0))) > 1e-3
  # A whole training loss at beta 0: finite gradients, and the prior still learns (the balanced KL).
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(g))
  assert float(jnp.max(jnp.abs(g["params"]["latent_prior"]["factors"]))) > 0.0
  with pytest.raises(errors.ConfigError, match="prior_rank"):
    _small(prior="factor", prior_rank=0)


def test_the_factor_prior_learns_the_direction_the_posteriors_share():
  """Trained by the KL alone on posteriors N(a_i v, s^2 I) whose means lie on one line v, the factor prior finds
  v as its factor, and s^2 on its diagonal: the aggregate posterior's Gaussian, as factor analysis fits it."""
  import optax
  size, s = 12, 0.3
  v = jnp.asarray(np.random.default_rng(0).normal(size=size), jnp.float32)
  v = v / jnp.linalg.norm(v)
  module = priors.FactorPrior(size, 1)
  params = module.init(jax.random.PRNGKey(0))
  tx = optax.adam(0.03)

  def loss(pr, key):
    a = 2.0 * jax.random.normal(key, (64, 1))
    return jnp.mean(fitted_prior.kl_from_diagonal(module.apply(pr), a * v, jnp.full((64, size), s)))

  @jax.jit
  def step(pr, opt, key):
    value, g = jax.value_and_grad(loss)(pr, key)
    updates, opt = tx.update(g, opt)
    return optax.apply_updates(pr, updates), opt, value

  opt, losses = tx.init(params), []
  for key in jax.random.split(jax.random.PRNGKey(1), 600):
    params, opt, value = step(params, opt, key)
    losses.append(float(value))
  p = module.apply(params)
  factor = p.factors[:, 0]
  assert abs(float(factor @ v)) / float(jnp.linalg.norm(factor)) > 0.98
  assert float(jnp.linalg.norm(factor)) == pytest.approx(2.0, rel=0.1)  # the spread of a along v
  np.testing.assert_allclose(p.diag, s * s, rtol=0.15)
  # The least expected KL any Gaussian prior reaches here: 0.5 log((4 + s^2) / s^2), along v alone.
  assert np.mean(losses[:10]) > 5.0
  assert np.mean(losses[-100:]) == pytest.approx(0.5 * np.log((4 + s * s) / (s * s)), rel=0.05)


def test_product_of_the_views_then_the_prior_is_the_product_of_experts():
  """The views' product, multiplied by N(0, I) afterwards, is the one-step product of experts with N(0, I)."""
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  mu, raw = jax.random.normal(k1, (3, 4, 5)), jax.random.normal(k2, (3, 4, 5))
  mask = jnp.array([[1, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]], bool)
  mean, scale = posterior.views_product(mu, raw, mask)
  np.testing.assert_array_equal(mean[2], 0.0)  # no real view: a placeholder, unused
  both = posterior.product_with(mean[:2], scale[:2], jnp.zeros(5), jnp.ones(5))
  ref = posterior.product_of_experts(mu, raw, mask)
  np.testing.assert_allclose(both[0], ref[0][:2], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(both[1], ref[1][:2], rtol=1e-5)
  np.testing.assert_allclose(mean[1], mu[1, 0], rtol=1e-6)  # one view: its own Gaussian
  np.testing.assert_allclose(scale[1], posterior.to_scale(raw[1, 0]), rtol=1e-6)


def test_poe_posterior_multiplies_the_views_into_the_prior_given_z0():
  model, params = _small(posterior="poe")
  shape = (1,) + model.latent_shape
  q = posterior.Posterior(mean=jnp.full(shape, 1.0), scale=jnp.full(shape, 0.5), top_mean=jnp.array([[0.2, 0.1]]),
                          top_scale=jnp.array([[0.3, 0.3]]), seen=jnp.array([[True] * 4 + [False] * 4]))
  latent = nerf_vae.posterior_latent(model, params, q)
  prior_mean, prior_scale = nerf_vae.cell_prior(model, params, q.top_mean)
  want = posterior.product_with(q.mean, q.scale, prior_mean, prior_scale)[0]
  np.testing.assert_allclose(latent[:, :4], want[:, :4], rtol=1e-5)
  np.testing.assert_allclose(latent[:, 4:], prior_mean[:, 4:], rtol=1e-6)  # unseen: the prior


def test_top_down_features_are_a_function_of_z0_beside_the_cells():
  model, params = _small(top_down=3)
  assert model.latent_shape == (8, 2 + 3)
  shape = (1, 8, 2)
  q = posterior.Posterior(mean=jnp.full(shape, 0.5), scale=jnp.full(shape, 0.5), top_mean=jnp.array([[0.2, 0.1]]),
                          top_scale=jnp.array([[1e-6, 1e-6]]), seen=jnp.ones((1, 8), bool))
  s = nerf_vae.sample_posterior(model, params, q, jax.random.PRNGKey(0))
  _, _, top_down = model.apply(params, q.top_mean, method=nerf_vae.NeRFVAE.cell_prior)
  assert s.z.shape == (1,) + model.latent_shape
  np.testing.assert_allclose(s.z[..., 2:], top_down, rtol=1e-4, atol=1e-6)  # z0 is (almost) certain here
  np.testing.assert_allclose(nerf_vae.posterior_latent(model, params, q)[..., :2], q.mean)
  # The density is the cells' and z0's: the deterministic features add nothing to it.
  moved = s.z.at[..., 2:].add(1.0)
  np.testing.assert_allclose(nerf_vae.log_prior(model, params, moved, q.top_mean),
                             nerf_vae.log_prior(model, params, s.z, q.top_mean), rtol=1e-6)
  for z in (nerf_vae.sample_prior(model, params, jax.random.PRNGKey(1), 4),
            nerf_vae.independent_cells(model, params, jax.random.PRNGKey(1), 4)):
    assert z.shape == (4,) + model.latent_shape


def test_a_depth_aware_lift_hands_the_cells_behind_a_views_surface_to_the_prior(tiny_data_dir):
  # The weight: 1 in front of the predicted surface and through an object's depth, half at the margin, 0 behind.
  w = nerf_vae.depth_weight(jnp.array([1.0, 3.0, 3.5, 5.0]), 3.0, 1.0)
  assert float(w[0]) > 0.9999 and float(w[1]) > 0.99 and float(w[2]) == pytest.approx(0.5) and float(w[3]) < 1e-6
  # A share of the views mixes their Gaussian with p(cells | z0); a bool share is the plain choice.
  model, params = _small()
  shape = (1,) + model.latent_shape
  q = posterior.Posterior(mean=jnp.full(shape, 3.0), scale=jnp.full(shape, 0.1), top_mean=jnp.array([[0.2, 0.1]]),
                          top_scale=jnp.array([[1e-4, 1e-4]]), seen=jnp.full((1, shape[1]), 0.25))
  prior_mean, _ = nerf_vae.cell_prior(model, params, q.top_mean)
  np.testing.assert_allclose(nerf_vae.posterior_latent(model, params, q), 0.25 * 3.0 + 0.75 * prior_mean, rtol=1e-5)
  np.testing.assert_allclose(nerf_vae.posterior_latent(model, params, q._replace(seen=jnp.ones((1, shape[1])))),
                             nerf_vae.posterior_latent(model, params, q._replace(seen=jnp.ones((1, shape[1]), bool))))
  # The model: at initialisation every view vouches for every cell it sees, as without the lift; with the
  # predicted surface at the near side of the scene, the cells deeper in follow the prior.
  lifted, lifted_params = _small(depth_lift=True)
  for name, value in params["params"].items():
    lifted_params["params"][name] = value
  scene = source.SceneSource("shape_scenes/tiny", "test", tiny_data_dir)[0]
  context = batching.context(protocol.context_batch([scene], 1))
  plain = nerf_vae.infer(model, params, context)
  head = lifted_params["params"]["depth_head"]
  start = {**lifted_params["params"], "depth_head": {"kernel": jnp.zeros_like(head["kernel"]),
                                                     "bias": jnp.full_like(head["bias"], nerf_vae.DEPTH_INIT)}}
  q0 = nerf_vae.infer(lifted, {"params": start}, context)
  assert float(jnp.min(jnp.where(plain.seen, q0.seen, 1.0))) > 0.99 and not bool(jnp.any(q0.seen[~plain.seen]))
  np.testing.assert_allclose(q0.mean, plain.mean, rtol=1e-5, atol=1e-6)
  near = {**start, "depth_head": {"kernel": start["depth_head"]["kernel"], "bias": jnp.full_like(head["bias"], -20.0)}}
  q1 = nerf_vae.infer(lifted, {"params": near}, context)
  assert float(jnp.mean(q1.seen)) < 0.5 * float(jnp.mean(plain.seen))
  # The depth head learns: the objective's gradient reaches it.
  grad = jax.grad(lambda p: jnp.sum(nerf_vae.infer(lifted, {"params": p}, context).seen))(start)
  assert float(jnp.abs(grad["depth_head"]["bias"]).sum()) > 0


def test_slots_are_bumps_on_the_grid_at_their_positions():
  """prior_net=slots: each slot of z0 adds a bump [1, tanh(appearance)] that peaks at its position; a cell far
  from every slot reads the scene numbers alone (tanh of them)."""
  a, s = priors.slot_split(32)
  assert (a, s) == (3, 8)  # 4 slots of 3 + 3, and 8 scene numbers
  top = np.zeros((1, 32), np.float32)
  pos = np.array([[0.9, 0.9, 0.9], [-0.9, -0.9, -0.9], [0.9, -0.9, 0.0], [-0.9, 0.9, 0.0]])  # 0.9 tanh(arctanh(0.7 p / 0.9)) = 0.7 p
  slots = np.concatenate([np.arctanh(pos / 0.9 * 0.7), np.tile([[1.0, -2.0, 0.5]], (4, 1))], -1)
  top[0, :24], top[0, 24:] = slots.reshape(-1), np.arange(8)
  width = lambda app: np.full(app.shape[:-1] + (1,), -2.0)  # softplus(-2) + 0.1 = 0.227 wide
  feats = np.asarray(priors.splat_slots(jnp.asarray(top), 8, width)).reshape(8 ** 3, -1)
  assert feats.shape == (8 ** 3, 1 + 3 + 8)
  centres = grid.cell_centres(8, 1.0)
  for p in pos * 0.7:  # at the cell nearest each slot its bump is above a half and carries its appearance
    near = np.argmin(np.sum(np.square(centres - p), -1))
    assert feats[near, 0] > 0.5 and feats[near, 1:4] == pytest.approx(feats[near, 0] * np.tanh([1.0, -2.0, 0.5]))
  far = np.argmin(np.sum(np.square(centres - np.array([0.9, 0.9, -0.9])), -1))
  assert feats[far, 0] < 1e-3
  np.testing.assert_allclose(feats[:, 4:], np.tile(np.tanh(np.arange(8)), (8 ** 3, 1)), rtol=1e-6)
  # Bounded whatever z0 is: a draw from the prior's far tails feeds the convolutions what posteriors could.
  wild = np.asarray(priors.splat_slots(jnp.asarray(top * 1e3), 8, width))
  assert np.all(np.abs(wild[..., 4:]) <= 1) and np.all(np.abs(wild[..., 1:4]) <= 4)
  with pytest.raises(errors.ConfigError, match="top_dim=16 is too small for prior_net=slots"):
    _small(prior_net="slots", top_dim=16)
