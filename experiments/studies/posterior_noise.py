"""Study (RESULTS.md, "Does the second stage gain from whole posteriors?"): how much of the one-sample
latents is the posteriors' noise, and a Gaussian fitted to the posterior means plus their average variance.

  XLA_FLAGS=--xla_force_host_platform_device_count=2 python experiments/studies/posterior_noise.py WORKDIR 2048 PREFIX

Prints the variance decomposition per number, and writes PREFIX_fa (factor analysis of one sample per
scene, as fit_prior --fit_to=samples) and PREFIX_means (of the means, plus the posteriors' average variance,
as fit_prior --fit_to=posteriors), each a copy of WORKDIR whose fitted_prior/<step>.npz is that Gaussian;
score each with `python -m experiments.generate --workdir=PREFIX_x --prior=fitted`.
"""
import functools, os, shutil, sys
import jax, jax.numpy as jnp, numpy as np
from nerf_vae_jax import sharding
from nerf_vae_jax.data import source
from nerf_vae_jax.evaluation import protocol, second_stage
from nerf_vae_jax.models import fitted_prior, nerf_vae
from nerf_vae_jax.train import run_dir

workdir, n, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
config, model, spec, params, step = run_dir.restore_params(workdir, None)
src = source.SceneSource(config.data.name, "train", config.data.data_dir)


@functools.partial(jax.jit, static_argnums=0)
def enc(model, params, context, key):
  q = nerf_vae.infer(model, params, context)
  k_top, k_cells = jax.random.split(key)
  top = nerf_vae.sample_latent(k_top, q.top_mean, q.top_scale)
  (mean, scale), _, _ = nerf_vae._cells_given_top(model, params, q, top)
  return nerf_vae.sample_latent(k_cells, mean, scale), scale, mean


mesh = sharding.make_mesh()
params_r = jax.device_put(params, sharding.replicated(mesh))
zs, ss, ms = [], [], []
for start, chunk, padded in protocol.padded_chunks(list(range(n)), 32):
  batch = protocol.context_batch([src[i] for i in padded], protocol.CONTEXT_CANDIDATES)
  context = sharding.global_batch({k: v for k, v in batch.items() if k.startswith("context")}, mesh)
  z, s, m = jax.device_get(enc(model, params_r, context, jax.random.fold_in(jax.random.PRNGKey(0), start)))
  zs.append(np.asarray(z)[:len(chunk)].reshape(len(chunk), -1))
  ms.append(np.asarray(m)[:len(chunk)].reshape(len(chunk), -1))
  ss.append(np.asarray(s)[:len(chunk)].reshape(len(chunk), -1))
z, s, means = np.concatenate(zs), np.concatenate(ss), np.concatenate(ms)
noise = np.mean(s ** 2, 0)
p = fitted_prior.fit(z, 128)
print(f"latents {z.shape}: total variance per number {z.var(0).mean():.3f}, factors {float(jnp.sum(p.factors**2))/z.shape[1]:.3f}, "
      f"FA diag {float(p.diag.mean()):.3f}, posterior noise {noise.mean():.3f}; "
      f"share of numbers whose noise exceeds the FA diag {np.mean(noise > np.asarray(p.diag)):.3f}")
held = z[-256:]
pm = fitted_prior.fit(means, 128)
pm = pm._replace(diag=pm.diag + jnp.asarray(noise, jnp.float32))
print(f"means: variance per number {means.var(0).mean():.3f}, factors {float(jnp.sum(pm.factors**2))/z.shape[1]:.3f}")
for name, prior in (("fa", p), ("means", pm)):
  out = f"{prefix}_{name}"
  if not os.path.exists(out):
    shutil.copytree(workdir, out, ignore=shutil.ignore_patterns("eval", "fitted_prior"))
  os.makedirs(os.path.join(out, "fitted_prior"), exist_ok=True)
  fitted_prior.save(second_stage.path_of(out, step), prior, step=step, num_scenes=n, rank=128,
                    explained_variance=fitted_prior.explained_variance(prior))
  print(name, "nats per number of the last 256 (in-sample)", -float(jnp.mean(fitted_prior.log_prob(prior, jnp.asarray(held)))) / z.shape[1])
