"""A run's second-stage prior, fitted to its posteriors of training scenes, sampled in place of the model's
prior, and scored by the held-out bounds under either prior. Two kinds:

  fitted       a Gaussian, low rank plus diagonal (``models/fitted_prior.py``)
  transformer  a causal transformer over the cells, a mixture of Gaussians per
               cell given the cells before it (``models/cell_transformer.py``)

  python -m experiments.fit_prior --workdir=RUN [--kind=fitted|transformer] [--num_scenes=N]
      [--fit_to=samples|posteriors] [--context=4|training]
  python -m experiments.generate --workdir=RUN --prior=fitted|transformer

``fit_run`` encodes training scenes from their 4 context views (``--context=training``: from as many as
training draws, 1-4), draws one
latent z ~ q(z | views) per scene, fits p2 to them and saves it beside the checkpoints
(RUN/fitted_prior/STEP.npz, or STEP_transformer.npz). The Gaussian is fitted
to each scene's posterior as a whole instead (its mean and variance,
``--fit_to=posteriors``, the default: the same samples and a better held-out
bound than one sample per scene, ``--fit_to=samples``; RESULTS.md).
``bounds`` estimates the held-out ELBO and IWAE bound of test scenes under
the model's prior and under p2, from the same posterior samples and rays:
with p2, the weights are log p(x | z) + log p2(z) - log q(z | views), a bound
on the log-likelihood of the model with prior p2.
"""

from __future__ import annotations

import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from nerf_vae_jax import errors, sharding
from nerf_vae_jax.data import source
from nerf_vae_jax.evaluation import protocol
from nerf_vae_jax.models import cell_transformer, fitted_prior, nerf_vae, objectives, ray_sampling
from nerf_vae_jax.train import run_dir


KINDS = ("fitted", "transformer")


def path_of(workdir: str, step: int, kind: str = "fitted") -> str:
  return os.path.join(workdir, "fitted_prior", f"{step}.npz" if kind == "fitted" else f"{step}_{kind}.npz")


def _module(kind: str):
  if kind not in KINDS:
    raise errors.UserError(f"Unknown second-stage prior {kind!r}; choose one of {', '.join(KINDS)}.")
  return fitted_prior if kind == "fitted" else cell_transformer


def log_prob(prior, z):
  """log p2(z) [B] of latents z [B, *latent_shape], either kind."""
  module = cell_transformer if isinstance(prior, cell_transformer.CellTransformer) else fitted_prior
  return module.log_prob(prior, z)


def check_model(model) -> None:
  if model.latent not in ("grid", "global"):
    raise errors.UserError(f"A fitted prior needs a latent; this model's is {model.latent!r}.")


@functools.partial(jax.jit, static_argnums=0)
def _encode(model, params, context, key):
  return (nerf_vae.sample_posterior(model, params, nerf_vae.infer(model, params, context), key).z,)


@functools.partial(jax.jit, static_argnums=0)
def _encode_moments(model, params, context, key):
  del key  # the same signature as _encode
  q = nerf_vae.infer(model, params, context)
  return q.mean, jnp.square(q.scale)


def _encode_scenes(encode, model, params, scene, num_scenes: int, batch_size: int, seed: int, log,
                   context_counts=(protocol.CONTEXT_CANDIDATES,)):
  """``encode``'s arrays for the first ``num_scenes`` scenes, flattened per scene: a list of [num_scenes, L]
  float32. Batch i draws with key fold_in(PRNGKey(seed), i's first scene) and encodes its scenes from their first
  context_counts[i % len(context_counts)] views (4 by default)."""
  mesh = sharding.make_mesh()
  batch_size = -(-batch_size // mesh.size) * mesh.size
  params = jax.device_put(params, sharding.replicated(mesh))
  out, t0, next_report = [], time.time(), 0.1
  for i, (start, chunk, padded) in enumerate(protocol.padded_chunks(list(range(num_scenes)), batch_size)):
    batch = protocol.context_batch([scene(j) for j in padded], context_counts[i % len(context_counts)])
    context = sharding.global_batch({k: v for k, v in batch.items() if k.startswith("context")}, mesh)
    arrays = jax.device_get(encode(model, params, context, jax.random.fold_in(jax.random.PRNGKey(seed), start)))
    out.append([np.asarray(a)[:len(chunk)].reshape(len(chunk), -1) for a in arrays])
    done = start + len(chunk)
    if done / num_scenes >= next_report or done == num_scenes:
      log(f"  encoded {done}/{num_scenes} training scenes ({time.time() - t0:.0f} s)")
      next_report += 0.1
  return [np.concatenate(parts) for parts in zip(*out)]


def posterior_latents(model, params, scene, num_scenes: int, batch_size: int = 32, seed: int = 0,
                      log=print, context_counts=(protocol.CONTEXT_CANDIDATES,)):
  """One latent z ~ q(z | 4 context views) per training scene: [num_scenes, L] float32 (flattened cells).
  ``scene(i)`` returns training scene i (a dict of ``source.SceneSource``); ``context_counts``: the context
  views of successive batches, cycled (``_encode_scenes``)."""
  return _encode_scenes(_encode, model, params, scene, num_scenes, batch_size, seed, log, context_counts)[0]


def posterior_moments(model, params, scene, num_scenes: int, batch_size: int = 32, seed: int = 0, log=print,
                      context_counts=(protocol.CONTEXT_CANDIDATES,)):
  """Each training scene's posterior as a whole: the means and variances [num_scenes, L] (float32, flattened
  cells) of q(cells | 4 context views)."""
  return tuple(_encode_scenes(_encode_moments, model, params, scene, num_scenes, batch_size, seed, log,
                              context_counts))


CONTEXTS = ("4", "training")


def context_counts(context: str, data_config) -> tuple[int, ...]:
  """``fit_run``'s ``context``: "4", every scene from its 4 context views; "training", batches cycled through
  the run's training range, data.min_context ... data.max_context views (training draws one per scene)."""
  if context == "4":
    return (protocol.CONTEXT_CANDIDATES,)
  if context == "training":
    return tuple(range(data_config.min_context, min(data_config.max_context, protocol.CONTEXT_CANDIDATES) + 1))
  raise errors.UserError(f"--context={context!r}; choose {' or '.join(CONTEXTS)}.")


def mean_kl(prior: fitted_prior.FittedPrior, means, variances, batch: int = 256) -> float:
  """The mean over scenes of KL(N(means, diag(variances)) || prior), nats per scene ([N, L] each)."""
  kl = lambda m, v: fitted_prior.kl_from_diagonal(prior, jnp.asarray(m), jnp.sqrt(jnp.asarray(v)))
  return float(np.mean(np.concatenate([np.asarray(kl(means[i:i + batch], variances[i:i + batch]))
                                       for i in range(0, len(means), batch)])))


FIT_TO = ("samples", "posteriors")


def fit_run(workdir: str, step: int | None = None, num_scenes: int | None = None, rank: int = 128,
            data_dir: str | None = None, log=print, kind: str = "fitted", steps: int = 1000,
            fit_to: str | None = None, context: str = "4") -> str:
  """Fits and saves the run's second-stage prior; returns its path.

  ``num_scenes``: training scenes (default 2,048 for the Gaussian, 8,192 for the transformer, which has more to
  learn); ``rank``: the Gaussian's factors; ``steps``: the transformer's training steps; ``fit_to``: "samples"
  (one posterior sample per scene; the transformer's) or, for the Gaussian and its default, "posteriors"
  (each scene's posterior as a whole: ``fitted_prior.fit_posteriors``; the same samples, a better bound);
  ``context``: the context views of the posteriors (``context_counts``: "4", or "training", the training
  range). Fitted to posteriors, the Gaussian's info also holds the scenes' mean KL under it and under the
  model's own prior (with the factor prior), the term of the ELBO that the prior decides."""
  _module(kind)  # a bad kind or context fails before the encoding
  counts = context_counts(context, run_dir.load_config(workdir).data)
  fit_to = fit_to or ("posteriors" if kind == "fitted" else "samples")
  if fit_to not in FIT_TO:
    raise errors.UserError(f"--fit_to={fit_to!r}; choose {' or '.join(FIT_TO)}.")
  if fit_to == "posteriors" and kind != "fitted":
    raise errors.UserError("--fit_to=posteriors fits the Gaussian (--kind=fitted) only; the transformer fits "
                           "one posterior sample per scene (--fit_to=samples).")
  config, model, spec, params, step = run_dir.restore_params(workdir, step)
  check_model(model)
  src = source.SceneSource(config.data.name, "train", data_dir or config.data.data_dir)
  num_scenes = min(num_scenes or (2048 if kind == "fitted" else 8192), len(src))
  if kind == "fitted" and rank >= num_scenes:
    raise errors.UserError(f"--rank={rank} needs more than {rank} training scenes (--num_scenes={num_scenes}).")
  held_out = min(256, num_scenes // 8)  # the transformer's: they choose its best point
  if kind == "transformer" and held_out < 2:
    raise errors.UserError(f"The transformer keeps an eighth of its --num_scenes={num_scenes} out to choose its "
                           "best point; give it at least 16.")
  what = f"a rank-{rank} Gaussian" if kind == "fitted" else f"a cell transformer ({steps} steps)"
  to = "posteriors" if fit_to == "posteriors" else "posterior samples"
  views = f"{counts[0]}" + (f"-{counts[-1]}" if len(counts) > 1 else "") + " context views"
  log(f"Fitting {what} to the {to} of {num_scenes} training scenes from {views} (step {step}) ...")
  t0 = time.time()
  path = path_of(workdir, step, kind)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  if kind == "fitted":
    kl = {}
    if fit_to == "posteriors":
      means, variances = posterior_moments(model, params, src.__getitem__, num_scenes, log=log,
                                           context_counts=counts)
      prior = fitted_prior.fit_posteriors(means, variances, rank)
      kl = {"kl_fitted": mean_kl(prior, means, variances)}
      if model.factor:  # the model's own prior is of the same family
        kl["kl_model"] = mean_kl(nerf_vae.prior_density(model, params), means, variances)
        log(f"  mean KL per scene of these posteriors: {kl['kl_fitted']:.1f} nats under the fitted prior, "
            f"{kl['kl_model']:.1f} under the model's own")
    else:
      prior = fitted_prior.fit(posterior_latents(model, params, src.__getitem__, num_scenes, log=log,
                                                 context_counts=counts), rank)
    share = fitted_prior.explained_variance(prior)
    fitted_prior.save(path, prior, step=step, num_scenes=num_scenes, rank=rank, explained_variance=share,
                      fit_to=fit_to, context=context, **kl)
    log(f"Saved {path}: {prior.mean.shape[0]} numbers per latent, the {rank} factors carry {share:.1%} of the "
        f"variance ({time.time() - t0:.0f} s).")
    return path
  z = posterior_latents(model, params, src.__getitem__, num_scenes, log=log, context_counts=counts)
  cells = z.reshape((len(z), -1, model.latent_dim))
  prior, info = cell_transformer.fit(cells, steps=steps, held_out=held_out, log=log)
  # The Gaussian on the same split, for scale: held-out nats per number of both.
  rank = min(rank, num_scenes - held_out - 1)
  gaussian = fitted_prior.fit(z[:-held_out], rank)
  info["gaussian_held_out_nats"] = -float(jnp.mean(fitted_prior.log_prob(gaussian, jnp.asarray(z[-held_out:])))
                                          ) / z.shape[1]
  cell_transformer.save(path, prior, step=step, num_scenes=num_scenes, **info)
  log(f"Saved {path}: held-out {info['held_out_nats']:.4f} nats per number, against "
      f"{info['gaussian_held_out_nats']:.4f} for a rank-{rank} Gaussian fitted to the same latents "
      f"({time.time() - t0:.0f} s).")
  return path


def load(workdir: str, step: int, kind: str = "fitted"):
  path = path_of(workdir, step, kind)
  if not os.path.exists(path):
    raise errors.UserError(f"No {kind} prior for step {step} at {path}: run `python -m experiments.fit_prior "
                           f"--workdir={workdir} --step={step}{'' if kind == 'fitted' else ' --kind=' + kind}` "
                           "first.")
  return _module(kind).load(path)


def sampler(model, prior):
  """``nerf_vae.sample_prior``'s signature, drawing from p2 (either kind): (model, params, key, num,
  temperature) -> latents [num, *latent_shape] (temperature scales the deviation from the mean, or each cell's
  noise)."""
  if isinstance(prior, cell_transformer.CellTransformer):
    draw = jax.jit(cell_transformer.sample, static_argnums=2)
  else:
    draw = lambda p, key, num, temperature: p.mean + temperature * (fitted_prior.sample(p, key, num) - p.mean)

  def sample_prior(model_, params, key, num, temperature=1.0):
    del model_, params
    return draw(prior, key, num, temperature).reshape((num,) + model.latent_shape)
  return sample_prior


@functools.partial(jax.jit, static_argnums=(0, 4))
def _bounds_batch(model, params, prior, batch, settings: protocol.Settings, key):
  k_rays, k_z = jax.random.split(key)
  q = nerf_vae.infer(model, params, batch)
  rays = ray_sampling.target_rays(batch, k_rays, settings.num_rays)

  ll, s = objectives.posterior_draws(model, params, q, rays, k_z, num_samples=settings.num_samples,
                                    likelihood_scale=settings.likelihood_scale)
  ratio = s.log_ratio
  fitted_ratio = jax.vmap(functools.partial(log_prob, prior))(s.z) - s.log_q
  pixels = batch["target_images"].shape[1] * batch["target_images"].shape[2] * batch["target_images"].shape[3]
  return {"elbo_model": jnp.mean(ll + ratio, 0) / pixels, "iwae_model": objectives.iwae(ll, ratio) / pixels,
          "elbo_fitted": jnp.mean(ll + fitted_ratio, 0) / pixels,
          "iwae_fitted": objectives.iwae(ll, fitted_ratio) / pixels}


def bounds(model, params, prior, scenes: list[dict], settings: protocol.Settings, num_context: int = 4,
           batch_size: int = 8, seed: int = 0) -> dict:
  """Held-out ELBO and IWAE bound, nats per pixel, of ``scenes`` from ``num_context`` views, under the model's
  prior and under p2 (the same samples and rays): {"elbo_model", "iwae_model", "elbo_fitted", "iwae_fitted"},
  each the mean over scenes. (The ELBO here is the Monte Carlo mean of log p(x|z) + log p(z) - log q(z), the
  same in expectation as ``evaluate``'s closed-form-KL ELBO.)"""
  mesh = sharding.make_mesh()
  batch_size = -(-batch_size // mesh.size) * mesh.size
  params = jax.device_put(params, sharding.replicated(mesh))
  prior = jax.device_put(prior, sharding.replicated(mesh))
  totals = {}
  for start, chunk, padded in protocol.padded_chunks(scenes, batch_size):
    batch = sharding.global_batch(protocol.context_batch(padded, num_context), mesh)
    out = jax.device_get(_bounds_batch(model, params, prior, batch, settings,
                                       jax.random.fold_in(jax.random.PRNGKey(seed), start)))
    for k, v in out.items():
      totals[k] = totals.get(k, 0.0) + float(np.sum(v[:len(chunk)]))
  return {k: v / len(scenes) for k, v in totals.items()}
