"""The training step: optimiser, beta schedule and one pure update.

The train state is a plain dict {"params", "opt_state", "step"}; the step is
a pure function (state, batch) -> (state, metrics), jit-compiled by the
runner with the state donated.

Randomness is per scene: scene i of the global batch at step s draws from
``fold_in(fold_in(key, s), i)``. A resumed run draws the same numbers, and
so does a run that splits the batch into micro-batches
(``config.train.microbatches``): scenes are independent (GroupNorm, no
batch statistics), so micro-batching changes the gradient only by float
rounding while activations shrink by the number of micro-batches.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from nerf_vae_jax import errors, image_metrics
from nerf_vae_jax.models import objectives, ray_sampling


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


def beta_at(step, config):
  """The KL weight at ``step``: linear from 0 to ``config.loss.beta`` over ``config.loss.beta_warmup_steps``.

  A warm-up of None spans the whole run (``config.train.num_steps``), however
  long an override makes it; 0 means no warm-up.
  """
  return config.loss.beta * _ramp(step, config.loss.beta_warmup_steps, config.train.num_steps)


def opacity_weight_at(step, config):
  """The opacity penalty's weight at ``step``: linear from 0 to ``config.loss.opacity_weight`` over
  ``config.loss.opacity_warmup_steps`` (None: the whole run), as ``beta_at``. At full weight from the start,
  it cleared every ray before objects formed (RESULTS.md, "Where the haze comes from")."""
  return config.loss.get("opacity_weight", 0.0) * _ramp(step, config.loss.get("opacity_warmup_steps"),
                                                        config.train.num_steps)


def _ramp(step, warmup, num_steps):
  """min(1, step / warmup); a warm-up of None spans ``num_steps``, and 0 means none."""
  warmup = num_steps if warmup is None else warmup
  if warmup <= 0:
    return jnp.ones((), jnp.float32)
  return jnp.minimum(1.0, step / warmup)


def init_state(model, tx, example_batch, key) -> dict:
  """Parameters and optimiser state for ``model`` (jit this with out_shardings).

  ``example_batch``: any batch of the training shapes (``batch.example``).
  """
  rays = ray_sampling.target_rays(example_batch, key, model.remat_chunks or 4)  # a few rays, a multiple of the chunks
  params = model.init(key, example_batch, rays.origins, rays.directions, key)
  return {"params": params, "opt_state": tx.init(params), "step": jnp.zeros((), jnp.int32)}


def scene_keys(key, step, num_scenes: int):
  """One key per scene of the global batch [num_scenes], from the run's key and the step."""
  step_key = jax.random.fold_in(key, step)
  return jax.vmap(lambda i: jax.random.fold_in(step_key, i))(jnp.arange(num_scenes))


def _interleave(x, devices: int, microbatches: int):
  """[B, ...] -> [M, B / M, ...] where every micro-batch takes an equal share of each device's rows.

  The batch is sharded in D contiguous blocks; micro-batch m takes the m-th
  slice of every block, so each micro-batch stays spread over all devices and
  no data moves between them.
  """
  b = x.shape[0]
  x = x.reshape((devices, microbatches, b // (devices * microbatches)) + x.shape[1:])
  return jnp.swapaxes(x, 0, 1).reshape((microbatches, b // microbatches) + x.shape[3:])


def loss_and_grads(model, config, params, batch, keys, step, devices: int = 1):
  """Mean loss over the batch's scenes, its metrics and gradients, in ``config.train.microbatches`` slices.

  Args:
    batch: model inputs [B, ...]; keys: [B] per-scene keys (``scene_keys``);
    devices: how many blocks the batch is sharded in (for the slicing).

  Each scene's ELBO is computed on its own (vmapped) with its own key, so the
  result does not depend on how the batch is split. The micro-batches run one
  after another inside the step (``lax.scan``), accumulating gradients.
  """
  loss_fn = functools.partial(
      objectives.elbo_loss, model, num_rays=config.loss.num_rays, likelihood_scale=config.loss.likelihood_scale,
      beta=beta_at(step, config), free_bits=config.loss.free_bits, coarse_weight=config.loss.coarse_weight,
      targets=config.loss.get("targets", "held_out"), object_fraction=config.loss.get("object_fraction", 0.0),
      kl_balance=config.loss.get("kl_balance", True), opacity_weight=opacity_weight_at(step, config),
      opacity_estimate=config.loss.get("opacity_estimate", "sampled"),
      density_noise=config.loss.get("density_noise", 0.0))

  def mean_loss(p, scenes, scene_keys_):
    one = lambda scene, k: loss_fn(p, jax.tree.map(lambda x: x[None], scene), k)
    losses, metrics = jax.vmap(one)(scenes, scene_keys_)
    return jnp.mean(losses), jax.tree.map(jnp.mean, metrics)

  grad_fn = jax.value_and_grad(mean_loss, has_aux=True)
  m = config.train.get("microbatches", 1)
  b = keys.shape[0]
  if m == 1:
    (loss, metrics), grads = grad_fn(params, batch, keys)
  else:
    if b % (devices * m):
      raise errors.ConfigError(
          f"config.train.microbatches={m} does not divide the {b // devices} scene(s) per device "
          f"(config.train.batch_size={b} over {devices} device(s)); choose a divisor of {b // devices}.")
    split = lambda x: _interleave(x, devices, m)

    def body(acc, mb):
      out = grad_fn(params, *mb)
      return jax.tree.map(jnp.add, acc, out), None

    zeros = jax.eval_shape(grad_fn, params, jax.tree.map(lambda x: x[:b // m], batch), keys[:b // m])
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), zeros)
    total, _ = jax.lax.scan(body, zeros, (jax.tree.map(split, batch), split(keys)))
    (loss, metrics), grads = jax.tree.map(lambda x: x / m, total)
  # The PSNR of the mean error, not the mean of per-scene PSNRs (as without vmap).
  metrics = dict(metrics, psnr=image_metrics.psnr(metrics["mse"], jnp))
  return loss, metrics, grads


def train_step(model, tx, config, state, batch, key, devices: int = 1):
  """One update. Returns (new state, metrics); metrics are scalars (device arrays).

  ``devices``: the number of devices the batch is sharded over (micro-batch slicing).
  """
  step = state["step"]
  keys = scene_keys(key, step, batch["target_images"].shape[0])
  _, metrics, grads = loss_and_grads(model, config, state["params"], batch, keys, step, devices)
  updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
  params = optax.apply_updates(state["params"], updates)
  metrics = dict(metrics, grad_norm=optax.tree.norm(grads),
                 learning_rate=learning_rate_schedule(config.train)(step))
  return {"params": params, "opt_state": opt_state, "step": step + 1}, metrics
