"""The training step: optimiser, beta schedule and one pure update.

The train state is a plain dict {"params", "opt_state", "step"}; the step is
a pure function (state, batch) -> (state, metrics), jit-compiled by the
runner with the state donated. Randomness per step is
``jax.random.fold_in(key, step)``, so a resumed run draws the same numbers.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from nerf_vae_jax.models import nerf_vae


def learning_rate_schedule(train_config):
  """Linear warm-up to the peak rate, then cosine decay to ``final_learning_rate_ratio`` of it."""
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=train_config.learning_rate, warmup_steps=train_config.warmup_steps,
      decay_steps=max(train_config.num_steps, train_config.warmup_steps + 1),
      end_value=train_config.get("final_learning_rate_ratio", 0.01) * train_config.learning_rate)


def make_optimizer(train_config) -> optax.GradientTransformation:
  """Adam with warm-up and cosine decay, after global-norm clipping."""
  return optax.chain(optax.clip_by_global_norm(train_config.grad_clip),
                     optax.adam(learning_rate_schedule(train_config)))


def beta_at(step, loss_config):
  """The KL weight: linear from 0 to loss_config.beta over beta_warmup_steps."""
  if loss_config.beta_warmup_steps <= 0:
    return jnp.asarray(loss_config.beta, jnp.float32)
  return loss_config.beta * jnp.minimum(1.0, step / loss_config.beta_warmup_steps)


def init_state(model, tx, example_batch, key) -> dict:
  """Parameters and optimiser state for ``model`` (jit this with out_shardings).

  ``example_batch``: any batch of the training shapes (``batch.example``).
  """
  rays = nerf_vae.target_rays(example_batch, key, 4)
  params = model.init(key, example_batch, rays.origins, rays.directions, key)
  return {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}


def train_step(model, tx, config, state, batch, key):
  """One update. Returns (new state, metrics); metrics are scalars (device arrays)."""
  step = state["step"]
  loss_fn = functools.partial(
      nerf_vae.elbo_loss, model, num_rays=config.loss.num_rays, likelihood_scale=config.loss.likelihood_scale,
      beta=beta_at(step, config.loss), free_bits=config.loss.free_bits, coarse_weight=config.loss.coarse_weight,
      targets=config.loss.get("targets", "held_out"), object_fraction=config.loss.get("object_fraction", 0.0))
  (_, metrics), grads = jax.value_and_grad(
      lambda p: loss_fn(p, batch, jax.random.fold_in(key, step)), has_aux=True)(state["params"])
  updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
  params = optax.apply_updates(state["params"], updates)
  metrics = dict(metrics, grad_norm=optax.tree.norm(grads),
                 learning_rate=learning_rate_schedule(config.train)(step))
  return {"params": params, "opt_state": opt_state, "step": step + 1}, metrics
