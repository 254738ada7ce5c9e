"""Prototype: a mixture of factor analysers as the second-stage prior: FD of its samples.
sys.argv = RUN COMPONENTS RANK [NUM_SCENES] [METRIC_SCENES].

A study kept for rerunning RESULTS.md, "How far are samples from scenes?" (8 host devices):
  python -m experiments.studies.second_stage_mixture RUN 8 64 [2048] [64]
"""
import sys, time
import jax, jax.numpy as jnp, numpy as np
from nerf_vae_jax.train import run_dir
from nerf_vae_jax.data import source
from nerf_vae_jax.evaluation import second_stage, sample_metrics, probe_net
from nerf_vae_jax.models import fitted_prior
workdir, C, rank = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
n = int(sys.argv[4]) if len(sys.argv) > 4 else 2048
m = int(sys.argv[5]) if len(sys.argv) > 5 else 64
config, model, spec, params, step = run_dir.restore_params(workdir, None)
train = source.SceneSource(config.data.name, "train", config.data.data_dir)
t0 = time.time()
z = second_stage.posterior_latents(model, params, train.__getitem__, n, log=lambda s: None)
print(f"latents {z.shape} in {time.time()-t0:.0f} s", flush=True)
# k-means on the top 64 principal components
x = z - z.mean(0)
_, _, vt = np.linalg.svd(x, full_matrices=False)
proj = x @ vt[:64].T
rng = np.random.default_rng(0)
cent = proj[rng.choice(len(proj), C, replace=False)]
for _ in range(50):
  lab = np.argmin(((proj[:, None] - cent[None]) ** 2).sum(-1), 1)
  cent = np.stack([proj[lab == c].mean(0) if (lab == c).any() else cent[c] for c in range(C)])
sizes = np.bincount(lab, minlength=C)
print("cluster sizes", sizes.tolist(), flush=True)
comps = [fitted_prior.fit(z[lab == c], min(rank, sizes[c] - 1)) for c in range(C)]
w = sizes / sizes.sum()
def sample_prior(model_, params_, key, num, temperature=1.0):
  kc, ks = jax.random.split(key)
  which = np.asarray(jax.random.choice(kc, C, (num,), p=jnp.asarray(w)))
  out = np.zeros((num, z.shape[1]), np.float32)
  for c in range(C):
    idx = np.nonzero(which == c)[0]
    if len(idx):
      out[idx] = np.asarray(fitted_prior.sample(comps[c], jax.random.fold_in(ks, c), len(idx)))
  return jnp.asarray(out).reshape((num,) + model.latent_shape)
src = source.SceneSource(config.data.name, "test", config.data.data_dir)
probe = probe_net.load_or_train(config.data.name, config.data.data_dir, log=lambda s: None)
met, _ = sample_metrics.measure(model, params, src, probe, num_scenes=m, chunk=config.eval.chunk,
                                sample_prior=sample_prior, prior_name="mixture")
print(f"C={C} rank={rank}: {sample_metrics.summary_line(met)}", flush=True)
