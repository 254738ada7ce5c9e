"""The training step's memory levers: micro-batches and rematerialisation give
the same update (up to float rounding) with less memory, on 2 host devices."""

import functools

import jax
import numpy as np
import pytest

from conftest import small_config
from nerf_vae_jax import batching
from nerf_vae_jax import sharding
from nerf_vae_jax.models import nerf_vae
from nerf_vae_jax.scenes import specs
from nerf_vae_jax.train import memory, update


SPEC = specs.SPECS["tiny"]


def _config(microbatches=1, remat=False):
  c = small_config(None, 10)
  c.train.microbatches, c.model.remat_chunks = microbatches, 4 if remat else 0
  return c


def _setup(config, mesh):
  model = nerf_vae.from_config(config.model, SPEC.scene_radius)
  tx = update.make_optimizer(config.train)
  repl, batch_sh = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  example = batching.example(batching.for_config(config, SPEC.height, SPEC.width))
  state = jax.jit(functools.partial(update.init_state, model, tx), out_shardings=repl)(example,
                                                                                        jax.random.PRNGKey(0))
  batch = jax.device_put(batching.synthetic(SPEC, config.data, config.train.batch_size), batch_sh)
  return model, state, batch, repl, batch_sh


def _grads(config, mesh):
  model, state, batch, repl, batch_sh = _setup(config, mesh)

  def f(params, batch):
    keys = update.scene_keys(jax.random.PRNGKey(1), 7, batch["target_images"].shape[0])
    return update.loss_and_grads(model, config, params, batch, keys, 7, devices=mesh.size)

  fn = jax.jit(f, in_shardings=(repl, batch_sh), out_shardings=repl)
  compiled = fn.lower(state["params"], batch).compile()
  return compiled(state["params"], batch), memory.step_bytes(compiled)


@pytest.fixture(scope="module")
def mesh():
  assert jax.device_count() == 2  # conftest
  return sharding.make_mesh()


@pytest.fixture(scope="module")
def one_batch(mesh):
  return _grads(_config(), mesh)


def _assert_same_update(a, b):
  (loss_a, metrics_a, grads_a), (loss_b, metrics_b, grads_b) = a, b
  np.testing.assert_allclose(loss_b, loss_a, rtol=1e-5)
  for k in ("kl", "mse", "psnr", "ll_per_pixel"):
    np.testing.assert_allclose(metrics_b[k], metrics_a[k], rtol=1e-5)
  for ga, gb in zip(jax.tree.leaves(grads_a), jax.tree.leaves(grads_b)):
    # Float32 sums in another order: agree to 1e-4 of each leaf's largest entry.
    np.testing.assert_allclose(gb, ga, rtol=1e-4, atol=1e-4 * float(np.max(np.abs(ga))) + 1e-9)


def test_four_microbatches_give_the_same_update_with_less_memory(mesh, one_batch):
  # batch 8 over 2 devices: 4 scenes per device, one per micro-batch.
  four = _grads(_config(microbatches=4), mesh)
  _assert_same_update(one_batch[0], four[0])
  assert four[1]["temporaries"] < 0.5 * one_batch[1]["temporaries"], (four[1], one_batch[1])


def test_remat_gives_the_same_gradients_and_parameters_with_less_memory(mesh, one_batch):
  remat = _grads(_config(remat=True), mesh)
  _assert_same_update(one_batch[0], remat[0])
  assert jax.tree.structure(remat[0][2]) == jax.tree.structure(one_batch[0][2])  # checkpoints interchangeable
  assert remat[1]["temporaries"] < one_batch[1]["temporaries"], (remat[1], one_batch[1])


def test_microbatches_that_do_not_divide_the_per_device_batch_are_a_config_error(mesh):
  from nerf_vae_jax import errors
  with pytest.raises(errors.ConfigError, match=r"microbatches=3 does not divide the 4 scene\(s\) per device"):
    _grads(_config(microbatches=3), mesh)


def test_scene_keys_depend_on_step_and_scene_only():
  k = jax.random.PRNGKey(3)
  a, b = update.scene_keys(k, 5, 8), update.scene_keys(k, 5, 4)
  np.testing.assert_array_equal(jax.random.key_data(a[:4]), jax.random.key_data(b))  # a scene's key ignores B
  c = update.scene_keys(k, 6, 8)
  assert not np.array_equal(jax.random.key_data(a), jax.random.key_data(c))


@pytest.mark.parametrize("num_steps", [1800, 100])
def test_tiny_kl_warmup_spans_the_run_however_long(num_steps):
  """tiny leaves beta_warmup_steps unset (None): beta rises linearly to 1 at the last step of any run
  length, so ``--config.train.num_steps=N`` needs no second override. A set warm-up stays fixed; 0 is none."""
  from experiments.configs import shape_scenes
  config = shape_scenes.get_config("tiny")
  config.train.num_steps = num_steps
  beta = lambda s: float(update.beta_at(s, config))
  assert config.loss.beta_warmup_steps is None
  np.testing.assert_allclose([beta(0), beta(num_steps // 4), beta(num_steps), beta(2 * num_steps)],
                             [0.0, 0.25, 1.0, 1.0], rtol=1e-6)
  config.loss.beta_warmup_steps = num_steps // 2
  assert beta(num_steps // 4) == pytest.approx(0.5) and beta(num_steps // 2) == 1.0
  config.loss.beta_warmup_steps = 0
  assert beta(0) == 1.0


def test_the_opacity_weight_rises_over_the_run_or_its_warm_up_to_its_setting():
  from experiments.configs import shape_scenes
  config = shape_scenes.get_config("tiny")
  config.train.num_steps, config.loss.opacity_weight = 400, 0.1
  w = lambda s: float(update.opacity_weight_at(s, config))
  np.testing.assert_allclose([w(0), w(100), w(400), w(800)], [0.0, 0.025, 0.1, 0.1], rtol=1e-6)
  config.loss.opacity_warmup_steps = 200  # a fixed length, whatever the run's
  np.testing.assert_allclose([w(0), w(100), w(200), w(400)], [0.0, 0.05, 0.1, 0.1], rtol=1e-6)
  config.loss.opacity_weight = 0.0
  assert w(400) == 0.0
