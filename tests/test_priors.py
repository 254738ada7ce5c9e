"""The priors of the grid latent (the reference's independent N(0, I) cells and the learned factor prior): a
normalised density, a KL its samples agree with, bounds that hold, samples of the right shape that a key
reproduces, and the depth-aware lift that hands hidden cells to the prior."""

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
from nerf_vae_jax.models import fitted_prior, nerf_vae, objectives, posterior, priors, ray_sampling


def _small(prior="factor", grid_size=2, latent_dim=2, noise=0.3, depth_lift=False, **overrides):
  """A small grid model of the tiny config and perturbed parameters (the zero-initialised heads and the
  prior's mean and scales made non-zero, so that q depends on the views and p is not N(0, I)); without the
  depth-aware lift unless asked (the tests here pin down the priors, on the cells a view sees)."""
  config = shape_scenes.get_config("tiny")
  config.model.update(prior=prior, grid_size=grid_size, latent_dim=latent_dim, depth_lift=depth_lift,
                      encoder_channels=(8, 16), mlp_width=16, mlp_depth=2, num_coarse=8, num_fine=8, **overrides)
  config.data.max_context = 2
  model = nerf_vae.from_config(config.model, 1.0)
  example = batching.example(batching.for_config(config, 32, 32))
  init = jax.jit(lambda k: model.init(k, example, jnp.zeros((1, 4, 3)), jnp.ones((1, 4, 3)) / np.sqrt(3), k))
  return model, perturbed(init(jax.random.PRNGKey(0)), noise)


def test_the_factor_prior_is_normalised_and_its_kl_is_what_its_samples_say():
  """E_r[p(z) / r(z)] = 1 for a proposal r a little wider than the model's prior p; and for a posterior q,
  the KL in closed form that sample_posterior returns is E_q[log q - log p] of its own samples."""
  model, params = _small(prior_rank=3)
  p = nerf_vae.prior_density(model, params)
  assert float(jnp.max(jnp.abs(p.mean))) > 0.1 and float(jnp.max(jnp.abs(p.diag - 1.0))) > 0.1  # not N(0, I)
  n, widen = 40_000, 1.25
  r = fitted_prior.FittedPrior(p.mean, widen * p.factors, widen ** 2 * p.diag)
  z = fitted_prior.sample(r, jax.random.PRNGKey(2), n).reshape((n,) + model.latent_shape)
  ratio = jnp.exp(nerf_vae.log_prior(model, params, z) - fitted_prior.log_prob(r, z))
  assert float(jnp.mean(ratio)) == pytest.approx(1.0, abs=4 * float(jnp.std(ratio)) / np.sqrt(n) + 1e-3)
  q = posterior.Posterior(mean=0.4 * jax.random.normal(jax.random.PRNGKey(3), (1,) + model.latent_shape),
                          scale=jnp.full((1,) + model.latent_shape, 0.5))
  s = jax.vmap(lambda k: nerf_vae.sample_posterior(model, params, q, k))(jax.random.split(jax.random.PRNGKey(4), n))
  assert float(jnp.mean(s.kl)) == pytest.approx(float(-jnp.mean(s.log_ratio)), rel=0.02)
  assert float(jnp.std(s.kl)) < 1e-3 < float(jnp.std(s.log_ratio))  # the closed form has no sampling noise
  # The diagonal Gaussians' KL (the independent prior's, and the second stage's pieces).
  m1, s1 = jnp.array([[0.5, -1.0, 0.2]]), jnp.array([[0.3, 1.5, 0.9]])
  m2, s2 = jnp.array([[0.1, 0.4, -0.3]]), jnp.array([[0.6, 1.1, 2.0]])
  x = m1 + s1 * jax.random.normal(jax.random.PRNGKey(0), (200_000, 3))
  mc = posterior.log_normal(x, m1, s1) - posterior.log_normal(x, m2, s2)
  assert float(posterior.kl_normal(m1, s1, m2, s2)[0]) == pytest.approx(float(jnp.mean(mc)), abs=0.01)
  assert float(posterior.kl_normal(m1, s1, m1, s1)[0]) == 0.0
  np.testing.assert_allclose(posterior.kl_normal(m1, s1, jnp.zeros(3), jnp.ones(3)),
                             posterior.kl_to_standard_normal(m1, s1), rtol=1e-6)


def test_a_run_saved_with_a_retired_study_option_loads_at_its_default_and_names_the_commit_otherwise():
  """Runs saved while ``model.cells_from_views`` existed keep loading (it was True unless a study changed it);
  one that trained with it off cannot be rebuilt here, and the error says which commit can. Runs of the retired
  hierarchical prior say so too; other runs saved with its (unread) fields load."""
  config = shape_scenes.get_config("tiny").model
  assert "cells_from_views" not in config
  config.cells_from_views = True
  assert nerf_vae.from_config(config, 1.0) == nerf_vae.from_config(shape_scenes.get_config("tiny").model, 1.0)
  config.cells_from_views = False
  with pytest.raises(errors.ConfigError, match="cells_from_views=False.*check out commit bd63e9c"):
    nerf_vae.from_config(config, 1.0)
  saved = shape_scenes.get_config("tiny").model
  saved.update(top_dim=64, prior_channels=16, prior_net="per_cell", top_down=0)  # as runs saved them
  assert nerf_vae.from_config(saved, 1.0) == nerf_vae.from_config(shape_scenes.get_config("tiny").model, 1.0)
  saved.prior = "hierarchical"
  with pytest.raises(errors.ConfigError, match="prior='hierarchical'.*check out commit bceea4f"):
    nerf_vae.from_config(saved, 1.0)


@pytest.mark.parametrize("prior", ["independent", "factor"])
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
  else:  # the prior's mean
    mean = nerf_vae.prior_density(model, params).mean.reshape(model.latent_shape)
    assert float(jnp.max(jnp.abs(mean))) > 0.1
    np.testing.assert_allclose(cold, jnp.broadcast_to(mean, cold.shape), rtol=1e-6)
  np.testing.assert_array_equal(nerf_vae.independent_cells(model, jax.random.PRNGKey(0), 5),
                                jax.random.normal(jax.random.PRNGKey(0), a.shape))  # the sample metrics' reference


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


def test_the_factor_prior_is_the_models_own_density_and_learns_at_the_full_rate(tiny_data_dir):
  """model.prior=factor: the KL is the closed form against N(mean, F F^T + diag(d)), the importance ratio uses
  its density, cells no view sees follow its marginal, and its parameters take the whole KL's gradient while
  the posterior takes beta x it; a whole training loss has finite gradients that reach the factors."""
  model, params = _small(prior_rank=3)
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
    unbalanced = jax.grad(lambda pr, f: jnp.sum(nerf_vae.sample_posterior(
        model, pr, posterior.Posterior(*f), key, beta=beta, balance=False).weighted_kl), argnums=(0, 1))
    return (grads("kl", 1.0), grads("weighted_kl", beta), unbalanced(pr, (q.mean, q.scale)),
            nerf_vae.infer(model, pr, batch).mean,
            nerf_vae.infer(independent, pr, batch).mean, nerf_vae.infer(model, pr, no_view), jax.grad(loss)(pr))

  ((p_kl, q_kl), (p_w, q_w), (p_off, q_off), q_views, q_independent, q_none, g) = rest(params)
  close = lambda a, b: jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6), a, b)
  close(p_w["params"]["latent_prior"], p_kl["params"]["latent_prior"])  # the prior: unweighted
  close(q_w, (beta * q_kl[0], beta * q_kl[1]))  # the posterior: beta x
  assert float(jnp.max(jnp.abs(p_kl["params"]["latent_prior"]["factors"]))) > 1e-4
  close((p_off, q_off), jax.tree.map(lambda x: beta * x, (p_kl, q_kl)))  # kl_balance off: beta x everything
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
    _small(prior_rank=0)


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


def test_a_depth_aware_lift_hands_the_cells_behind_a_views_surface_to_the_prior(tiny_data_dir):
  # The weight: 1 in front of the predicted surface and through an object's depth, half at the margin, 0 behind.
  w = nerf_vae.depth_weight(jnp.array([1.0, 3.0, 3.5, 5.0]), 3.0, 1.0)
  assert float(w[0]) > 0.9999 and float(w[1]) > 0.99 and float(w[2]) == pytest.approx(0.5) and float(w[3]) < 1e-6
  # A share of the views mixes their Gaussian parameter with the prior's; a bool share is the plain choice.
  np.testing.assert_allclose(nerf_vae.blend(jnp.array([0.25, 1.0]), 3.0, 1.0), [1.5, 3.0])
  np.testing.assert_array_equal(nerf_vae.blend(jnp.array([False, True]), 3.0, 1.0), [1.0, 3.0])
  # The model (the independent prior, so "follows the prior" is N(0, 1)): at initialisation every view vouches
  # for every cell it sees, as without the lift; with the predicted surface at the near side of the scene, the
  # cells deeper in follow the prior.
  model, params = _small(prior="independent")
  lifted, lifted_params = _small(prior="independent", depth_lift=True)
  for name, value in params["params"].items():
    lifted_params["params"][name] = value
  scene = source.SceneSource("shape_scenes/tiny", "test", tiny_data_dir)[0]
  context = batching.context(protocol.context_batch([scene], 1))
  off_prior = lambda q: jnp.abs(q.mean) + jnp.abs(q.scale - 1.0)  # [1, N, D]: 0 where a cell follows the prior
  head = lifted_params["params"]["depth_head"]
  start = {**lifted_params["params"], "depth_head": {"kernel": jnp.zeros_like(head["kernel"]),
                                                     "bias": jnp.full_like(head["bias"], nerf_vae.DEPTH_INIT)}}
  near = {**start, "depth_head": {"kernel": start["depth_head"]["kernel"], "bias": jnp.full_like(head["bias"], -20.0)}}

  @jax.jit  # one compile for the rest
  def infer(p_plain, p_start, p_near):
    grad = jax.grad(lambda p: jnp.sum(off_prior(nerf_vae.infer(lifted, {"params": p}, context))))(p_start)
    return (nerf_vae.infer(model, p_plain, context), nerf_vae.infer(lifted, {"params": p_start}, context),
            nerf_vae.infer(lifted, {"params": p_near}, context), grad)

  plain, q0, q1, grad = infer(params, start, near)
  # (each seen cell's weight is at least 0.993 there, so the blend moves it by under 1% towards the prior)
  np.testing.assert_allclose(q0.mean, plain.mean, rtol=0.01, atol=1e-4)
  np.testing.assert_allclose(q0.scale, plain.scale, rtol=0.01, atol=1e-4)
  assert float(jnp.mean(off_prior(plain))) > 0.05  # the views do say something about the cells they see
  assert float(jnp.mean(off_prior(q1))) < 0.5 * float(jnp.mean(off_prior(plain)))
  # The depth head learns: the objective's gradient reaches it.
  assert float(jnp.abs(grad["depth_head"]["bias"]).sum()) > 0
