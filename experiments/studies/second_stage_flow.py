"""Prototype: a RealNVP flow over the top-k whitened principal coefficients of posterior latents, isotropic
Gaussian residual: sys.argv = RUN K NUM_SCENES STEPS.

A study kept for rerunning RESULTS.md, "How far are samples from scenes?" (8 host devices):
  python -m experiments.studies.second_stage_flow RUN 256 4096 3000
"""
import sys, time
import jax, jax.numpy as jnp, numpy as np, optax
import flax.linen as nn
from nerf_vae_jax.train import run_dir
from nerf_vae_jax.data import source
from nerf_vae_jax.evaluation import second_stage, sample_metrics, probe_net
workdir, K, n, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
config, model, spec, params, step = run_dir.restore_params(workdir, None)
train = source.SceneSource(config.data.name, "train", config.data.data_dir)
t0 = time.time()
z = second_stage.posterior_latents(model, params, train.__getitem__, n, log=lambda s: None).astype(np.float64)
L = z.shape[1]
mu = z.mean(0); x = z - mu
_, s, vt = np.linalg.svd(x, full_matrices=False)
eig = s ** 2 / n
V = vt[:K]; sd = np.sqrt(eig[:K])
sigma2 = eig[K:].sum() / (L - K)
c = (x @ V.T) / sd
print(f"latents {z.shape}, top-{K} share {eig[:K].sum()/eig.sum():.1%}, residual var {sigma2:.4f} ({time.time()-t0:.0f} s)", flush=True)
rng = np.random.default_rng(0); perm = rng.permutation(n); ntest = n // 10
ctest, ctrain = jnp.asarray(c[perm[:ntest]], jnp.float32), jnp.asarray(c[perm[ntest:]], jnp.float32)

class Coupling(nn.Module):
  d: int; hidden: int = 512
  @nn.compact
  def __call__(self, h):
    h = nn.relu(nn.Dense(self.hidden)(h)); h = nn.relu(nn.Dense(self.hidden)(h))
    out = nn.Dense(2 * self.d, kernel_init=nn.initializers.zeros)(h)
    s, t = jnp.split(out, 2, -1)
    return jnp.tanh(s) * 2.0, t

LAYERS = 8
masks = [np.arange(K) % 2 == (i % 2) if i % 4 < 2 else (np.arange(K) < K // 2) == (i % 2 == 0) for i in range(LAYERS)]
perms = [np.random.default_rng(i).permutation(K) for i in range(LAYERS)]
nets = [Coupling(K) for _ in range(LAYERS)]
key = jax.random.PRNGKey(0)
fparams = [net.init(jax.random.fold_in(key, i), jnp.zeros((1, K))) for i, net in enumerate(nets)]

def forward(fp, y):  # data -> base, log det
  ld = 0.0
  for i in range(LAYERS):
    y = y[:, perms[i]]
    m = jnp.asarray(masks[i], y.dtype)
    s, t = nets[i].apply(fp[i], y * m)
    s, t = s * (1 - m), t * (1 - m)
    y = y * m + (1 - m) * (y * jnp.exp(s) + t)
    ld = ld + s.sum(-1)
  return y, ld

def inverse(fp, y):
  for i in reversed(range(LAYERS)):
    m = jnp.asarray(masks[i], y.dtype)
    s, t = nets[i].apply(fp[i], y * m)
    s, t = s * (1 - m), t * (1 - m)
    y = y * m + (1 - m) * ((y - t) * jnp.exp(-s))
    y = y[:, np.argsort(perms[i])]
  return y

def nll(fp, y):
  u, ld = forward(fp, y)
  return jnp.mean(0.5 * jnp.sum(u * u, -1) + 0.5 * K * np.log(2 * np.pi) - ld) / K

opt = optax.adamw(1e-3, weight_decay=1e-4); ost = opt.init(fparams)
@jax.jit
def stepf(fp, ost, y):
  l, g = jax.value_and_grad(nll)(fp, y)
  u, ost = opt.update(g, ost, fp)
  return optax.apply_updates(fp, u), ost, l
evaln = jax.jit(nll)
gauss = float(0.5 * np.log(2 * np.pi) + 0.5 * np.mean(np.asarray(ctest) ** 2))
best, bestp = 1e9, fparams
for it in range(steps):
  idx = rng.integers(0, len(ctrain), 256)
  fparams, ost, l = stepf(fparams, ost, ctrain[idx])
  if it % 250 == 0 or it == steps - 1:
    te = float(evaln(fparams, ctest))
    if te < best: best, bestp = te, fparams
    print(f"step {it}: train {float(l):.3f} held-out {te:.3f} nats/dim (N(0, I): {gauss:.3f})", flush=True)
fparams = bestp
Vj, sdj, muj = jnp.asarray(V, jnp.float32), jnp.asarray(sd, jnp.float32), jnp.asarray(mu, jnp.float32)
def sample_prior(model_, params_, key, num, temperature=1.0):
  k1, k2 = jax.random.split(key)
  cc = inverse(fparams, temperature * jax.random.normal(k1, (num, K)))
  e = jax.random.normal(k2, (num, L))
  e = e - (e @ Vj.T) @ Vj  # residual in the complement
  zz = muj + (cc * sdj) @ Vj + np.sqrt(sigma2) * e
  return zz.reshape((num,) + model.latent_shape)
src = source.SceneSource(config.data.name, "test", config.data.data_dir)
probe = probe_net.load_or_train(config.data.name, config.data.data_dir, log=lambda s: None)
for name, sp in (("flow", sample_prior),):
  met, _ = sample_metrics.measure(model, params, src, probe, num_scenes=64, chunk=config.eval.chunk,
                                  sample_prior=sp, prior_name=name)
  print(f"{name} K={K}: {sample_metrics.summary_line(met)}", flush=True)
# the same PCA space with a Gaussian (identity) on the coefficients: the baseline of this parameterisation
fparams0 = [jax.tree_util.tree_map(jnp.zeros_like, p) for p in fparams]
fparams = fparams0
met, _ = sample_metrics.measure(model, params, src, probe, num_scenes=64, chunk=config.eval.chunk,
                                sample_prior=sample_prior, prior_name="pca_gauss")
print(f"pca gaussian K={K}: {sample_metrics.summary_line(met)}", flush=True)
