"""Study: is z0's prior hole what keeps the model's own prior's samples far from scenes?

    python -m experiments.studies.top_prior RUN DATA_DIR [NUM_SCENES] [CELL_TEMPERATURE]

Encodes NUM_SCENES (2,048) training scenes from their 4 context views and draws one z0 ~ q(z0 | views) each.
Then scores (sample seed 0, 64 scenes per set, the demo probe's features) cells ~ p(cells | z0) for z0 drawn
  - from N(0, I) (the model's own prior),
  - from a full-covariance Gaussian fitted to those z0 draws (a second stage over z0 alone: with p(cells | z0)
    it is a proper prior, so bounds under it stay bounds),
  - as the z0 draws of unseen training scenes themselves (what a perfect z0 prior would give).
CELL_TEMPERATURE (1) scales the cells' noise given z0 (0: p(cells | z0)'s mean).
"""
import sys

import jax
import numpy as np

from nerf_vae_jax.data import source
from nerf_vae_jax.evaluation import probe_net, sample_metrics, second_stage
from nerf_vae_jax.models import nerf_vae
from nerf_vae_jax.train import run_dir


def top_draws(model, params, scene, num):
  """z0 ~ q(z0 | 4 views) [num, top_dim] for the first ``num`` training scenes."""
  def encode(model, params, context, key):
    q = nerf_vae.infer(model, params, context)
    return (nerf_vae.sample_latent(jax.random.split(key)[0], q.top_mean, q.top_scale),)
  return second_stage._encode_scenes(jax.jit(encode, static_argnums=0), model, params, scene, num, 32, 0,
                                     log=lambda _: None)[0]


def cells_given(tops, cell_temperature):
  """A sampler (``nerf_vae.sample_prior``'s signature) of cells ~ p(cells | z0), z0 = tops(key, num)."""
  def draw(model, params, key, num, temperature):
    k_top, k_cells = jax.random.split(key)
    return nerf_vae.cells_given_top(model, params, tops(k_top, num), k_cells, cell_temperature)
  return draw


def main(workdir, data_dir, num_scenes="2048", cell_temperature="1"):
  config, model, _, params, step = run_dir.restore_params(workdir, None)
  n = int(num_scenes)
  train = source.SceneSource(config.data.name, "train", data_dir)
  z0 = top_draws(model, params, train.__getitem__, n + 64)
  fit, unseen = z0[:n], z0[n:]  # the last 64 scenes are not in the fit
  mu, cov = fit.mean(0), np.cov(fit, rowvar=False)
  chol = np.linalg.cholesky(cov + 1e-6 * np.eye(len(mu)))
  eig = np.linalg.eigvalsh(cov)
  print(f"{workdir} step {step}: z0 of {model.top_dim}; over {n} scenes its mean's norm {np.linalg.norm(mu):.2f}, "
        f"covariance eigenvalues {eig.min():.3f}-{eig.max():.3f} (N(0, I): all 1), mean variance {eig.mean():.3f}",
        flush=True)
  test = source.SceneSource(config.data.name, "test", data_dir)
  probe = probe_net.load_or_train(config.data.name, data_dir)
  refs = {}
  samplers = {
      "N(0, I) (own prior)": lambda key, num: jax.random.normal(key, (num, model.top_dim)),
      "Gaussian fitted to q(z0) draws": lambda key, num: mu + jax.random.normal(key, (num, len(mu))) @ chol.T,
      "z0 of unseen training scenes": lambda key, num: unseen[:num],
  }
  for name, tops in samplers.items():
    m, _ = sample_metrics.measure(model, params, test, probe, num_scenes=64, seed=0, chunk=config.eval.chunk,
                                  sample_prior=cells_given(tops, float(cell_temperature)), prior_name=name, references=refs)
    print(f"z0 {name}: {sample_metrics.summary_line(m)}", flush=True)


if __name__ == "__main__":
  main(*sys.argv[1:])
