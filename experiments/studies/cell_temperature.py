"""Study: the model's own hierarchical prior with z0 drawn at temperature 1 and the cells given z0 at a lower one.

    python -m experiments.studies.cell_temperature RUN DATA_DIR T [T ...]

Prints the sample line (FD against the test views in the demo probe's features, coverage, objects, haze) for
each cell temperature T (1: the prior itself; 0: the mean of p(cells | z0)). Sample seed 0, 64 scenes per set.
"""
import sys

import jax
import numpy as np

from nerf_vae_jax.data import source
from nerf_vae_jax.evaluation import probe_net
from nerf_vae_jax.evaluation import sample_metrics
from nerf_vae_jax.models import nerf_vae
from nerf_vae_jax.train import run_dir


def drawer(cell_t):
  def draw(model, params, key, num, temperature):
    del temperature
    k_top, k_cells = jax.random.split(key)
    top = jax.random.normal(k_top, (num, model.top_dim))
    mean, scale, top_down = model.apply(params, top, method=nerf_vae.NeRFVAE.cell_prior)
    return nerf_vae.with_top_down(mean + cell_t * scale * jax.random.normal(k_cells, mean.shape), top_down)
  return draw


def main(workdir, data_dir, *temps):
  config, model, _, params, step = run_dir.restore_params(workdir, None)
  src = source.SceneSource(config.data.name, "test", data_dir)
  probe = probe_net.load_or_train(config.data.name, data_dir)
  refs = {}
  mean_scale = model.apply(params, np.zeros((1, model.top_dim), np.float32), method=nerf_vae.NeRFVAE.cell_prior)[1]
  print(f"{workdir} step {step}: p(cells | z0=0)'s mean scale {float(mean_scale.mean()):.3f}", flush=True)
  for t in temps:
    m, _ = sample_metrics.measure(model, params, src, probe, num_scenes=64, seed=0, chunk=config.eval.chunk,
                                  sample_prior=drawer(float(t)), prior_name=f"cells_t{t}", references=refs)
    print(f"cell temperature {t}: {sample_metrics.summary_line(m)}", flush=True)


if __name__ == "__main__":
  main(*sys.argv[1:])
