"""NeRF-VAE's objectives: the likelihood of pixels, the ELBO (the training loss) and the IWAE bound.

``ray_log_likelihood`` is the one place where the likelihood of pixels is
computed and rescaled to whole images: the ELBO, the IWAE bound, evaluation
and test-time refinement all call it. The latent's side (posterior samples,
KL terms, importance ratios) comes from ``nerf_vae.sample_posterior``, so
every objective holds for the independent and the factor prior alike.
Shapes: B scenes, R rays, S posterior samples.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from nerf_vae_jax import errors, image_metrics
from nerf_vae_jax.models import nerf_vae, posterior
from nerf_vae_jax.models.nerf_vae import NeRFVAE
from nerf_vae_jax.models.ray_sampling import Rays, training_rays


def gaussian_log_likelihood(x, mean, scale: float):
  """log N(x; mean, scale^2) of each colour channel: [..., 3] -> [..., 3]."""
  return -0.5 * jnp.square((x - mean) / scale) - math.log(scale) - 0.5 * math.log(2 * math.pi)


def ray_log_likelihood(model: NeRFVAE, params, latent, rays: Rays, key, *, likelihood_scale: float,
                       randomized: bool = True, density_noise: float = 0.0):
  """log p(pixels | latent) of whole images, estimated from ``rays``.

  The Gaussian log-likelihood of each ray's colour under the rendered colour,
  summed over channels, weighted by the ray's importance weight and summed
  over rays: an unbiased estimate of the log-likelihood of every real pixel
  of the views the rays were drawn from. ``density_noise``: the training
  regulariser (``NeRFVAE.render_rays``).

  Returns:
    ({"fine": [B], "coarse": [B]} log-likelihoods in nats, the render of
    ``NeRFVAE.render_rays``).
  """
  out = model.apply(params, latent, rays.origins, rays.directions, key, randomized, density_noise,
                    method=NeRFVAE.render_rays)
  ll = {p: jnp.sum(jnp.sum(gaussian_log_likelihood(rays.colours, out[p]["rgb"], likelihood_scale), -1)
                   * rays.weights, axis=1) for p in ("fine", "coarse")}
  return ll, out


def opacity_penalty(acc, eps: float = 0.01):
  """log(eps + a) + log(1 + eps - a) of rendered opacities a in [0, 1] (any shape): highest (-1.35) at
  a = 1/2, lowest (-4.6) at 0 and 1; up to a factor and a constant, the negative log-density of Neural
  Volumes' Beta(1/2, 1/2) prior on opacity, made finite."""
  return jnp.log(eps + acc) + jnp.log(1.0 + eps - acc)


def opacity_mean(rays: Rays, acc, estimate: str = "sampled"):
  """The opacity penalty per pixel [B] of rendered opacities acc [B, R]: its mean over the sampled rays
  ("sampled") or its importance-weighted estimate over every real pixel ("image")."""
  pen = opacity_penalty(acc)
  if estimate == "sampled":
    return jnp.mean(pen, axis=-1)
  if estimate == "image":
    return image_mean(rays, pen)
  raise errors.ConfigError(f"config.loss.opacity_estimate={estimate!r}; choose sampled or image.")


def image_mean(rays: Rays, per_ray):
  """The importance-weighted estimate [B] of a per-pixel quantity's mean over every real pixel, from its
  values per ray [B, R]."""
  return jnp.sum(per_ray * rays.weights, axis=1) / rays.pixels


def weighted_mse(rays: Rays, rgb):
  """The estimate of the mean squared error over every real pixel [B] (colours in [0, 1])."""
  return image_mean(rays, jnp.mean(jnp.square(rgb - rays.colours), -1))


def elbo_loss(model: NeRFVAE, params, batch, key, *, num_rays: int, likelihood_scale: float, beta=1.0,
              free_bits: float = 0.0, coarse_weight: float = 0.1, targets: str = "held_out",
              object_fraction: float = 0.0, kl_balance: bool = True, opacity_weight: float = 0.0,
              opacity_estimate: str = "sampled", density_noise: float = 0.0):
  """The training loss and its metrics.

  The ELBO per scene is the log-likelihood of the whole target images
  (``ray_log_likelihood`` of R rays from ``training_rays``) minus
  KL(q(z | context) || p(z)) (``nerf_vae.sample_posterior``). The loss is
  -(LL - beta * max(KL, free_bits) + coarse_weight * LL_coarse) / P per
  scene, averaged over scenes, where P is the number of pixels the likelihood
  covers (it keeps the numbers readable). LL_coarse trains the coarse pass,
  as in NeRF. Both passes query the same scene function, which the fine
  pass trains too; with ``coarse_weight`` 0 the coarse pass only places the
  fine samples (whose edges stop the gradient), so it runs forward only and
  its backward pass is never built.

  ``kl_balance``: with a learned prior, the prior learns from the whole KL
  while beta warms up (``nerf_vae.sample_posterior``).

  ``opacity_weight``: adds ``opacity_weight x opacity_penalty`` per ray to the
  loss (Neural Volumes' beta prior on each ray's rendered opacity), which
  pushes opacities to 0 or 1: without it the model renders objects as
  semi-transparent volumes, and its prior samples as haze (RESULTS.md, "Where
  the haze comes from"). The ELBO metrics leave it out. ``opacity_estimate``:
  "sampled", its mean over the sampled rays (which lean towards objects by
  ``object_fraction``), or "image", its importance-weighted sum, an estimate
  over whole images as the likelihood's (mostly backdrop). The two agree when
  ``object_fraction`` is 0.

  ``density_noise``: the std of Gaussian noise on the raw densities of the
  training renders (NeRF's regulariser, ``rendering.render_coarse_fine``);
  the metrics are those of the noisy renders.

  Returns:
    (loss, metrics): metrics hold per-pixel ELBO, log-likelihood and KL (in
    nats), the KL per scene, the fine pass's MSE and PSNR (estimates over whole images),
    and beta.
  """
  k_z, k_rays, k_render = jax.random.split(key, 3)
  q = nerf_vae.infer(model, params, batch)
  sample = nerf_vae.sample_posterior(model, params, q, k_z, beta=beta, balance=kl_balance)
  kl = sample.kl
  rays = training_rays(batch, k_rays, num_rays, targets=targets, object_fraction=object_fraction)
  ll, out = ray_log_likelihood(model, params, sample.z, rays, k_render, likelihood_scale=likelihood_scale,
                               density_noise=density_noise)
  per_pixel = lambda x: jnp.mean(x / rays.pixels)
  kl_term = jnp.where(kl > free_bits, sample.weighted_kl, beta * free_bits)  # beta * max(KL, free bits)
  haze = opacity_mean(rays, out["fine"]["acc"], opacity_estimate)  # [B]
  # 0: no term, so no gradient and no backward pass for the coarse pass (the docstring says why).
  coarse_term = coarse_weight * ll["coarse"] if coarse_weight else 0.0
  objective = ll["fine"] - kl_term + coarse_term - opacity_weight * rays.pixels * haze
  mse = jnp.mean(weighted_mse(rays, out["fine"]["rgb"]))
  metrics = {
      "loss": -per_pixel(objective), "elbo_per_pixel": per_pixel(ll["fine"] - kl),
      "ll_per_pixel": per_pixel(ll["fine"]), "kl_per_pixel": per_pixel(kl), "kl": jnp.mean(kl),
      "mse": mse, "psnr": image_metrics.psnr(mse, jnp), "mse_coarse": jnp.mean(weighted_mse(rays, out["coarse"]["rgb"])),
      "beta": jnp.asarray(beta, jnp.float32), "opacity_penalty": jnp.mean(haze),
  }
  return metrics["loss"], metrics


def posterior_samples(model: NeRFVAE, params, q: posterior.Posterior, rays: Rays, key, *, num_samples: int,
                      likelihood_scale: float):
  """For S posterior samples z_s ~ q(z | views): log p(x | z_s), log p(z_s) - log q(z_s | views) and the
  KL term of ``nerf_vae.sample_posterior``, each [S, B].

  x is what ``rays`` stand for (whole images); rendering is deterministic.
  The ELBO is the mean of log p(x | z_s) - KL_s; the IWAE bound is
  ``iwae(log_likelihood, log_ratio)``.
  """
  ll, s = posterior_draws(model, params, q, rays, key, num_samples=num_samples, likelihood_scale=likelihood_scale)
  return ll, s.log_ratio, s.kl


def posterior_draws(model: NeRFVAE, params, q: posterior.Posterior, rays: Rays, key, *, num_samples: int,
                    likelihood_scale: float):
  """``posterior_samples`` with every field of the draws: (log p(x | z_s) [S, B], ``nerf_vae.LatentSample``
  with fields [S, B, ...]), for the weights under another prior (``evaluation/second_stage.py``)."""
  def one(k):
    s = nerf_vae.sample_posterior(model, params, q, k)
    ll, _ = ray_log_likelihood(model, params, s.z, rays, k, likelihood_scale=likelihood_scale, randomized=False)
    return ll["fine"], s

  return jax.lax.map(one, jax.random.split(key, num_samples))


def iwae(log_likelihood, log_ratio):
  """Importance-weighted bound [B] from ``posterior_samples``' [S, B] arrays."""
  return jax.nn.logsumexp(log_likelihood + log_ratio, axis=0) - math.log(log_likelihood.shape[0])
