"""Study (RESULTS.md, "An autoregressive prior over the cells"): a second-stage VAE over the grid latent.

A scene code u ~ N(0, I_U) is drawn once, and a 3-D convolutional decoder gives every cell's mean and scale
given it; the cells are independent given u. Fitted to one posterior sample per training scene (the ELBO of
the standardised latents; 256 scenes held out, the best held-out point kept), then scored as the other
second stages: held-out nats per number (ELBO and a 64-sample IWAE) and the sample metrics at 128 scenes.

  python experiments/studies/cell_vae_prior.py WORKDIR NUM_SCENES STEPS U WIDTH [OUT.npy]
  (STEPS=0 reloads OUT.npy and only scores it.)"""
import functools, math, sys, time
import flax.linen as nn
import jax, jax.numpy as jnp, numpy as np, optax
from nerf_vae_jax.train import run_dir
from nerf_vae_jax.data import source
from nerf_vae_jax.evaluation import second_stage

workdir, n, steps, U, W = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
out = sys.argv[6] if len(sys.argv) > 6 else None
BATCH = 64
config, model, spec, params, step = run_dir.restore_params(workdir, None)
train = source.SceneSource(config.data.name, "train", config.data.data_dir)
cache = f"/tmp/latents_{workdir.strip('/').split('/')[-1]}_{n}.npy"
try:
  z = np.load(cache)
except FileNotFoundError:
  z = second_stage.posterior_latents(model, params, train.__getitem__, n, log=print)
  np.save(cache, z)
G, D = model.grid_size, model.latent_dim
C = G ** 3
z = z.reshape(n, G, G, G, D).astype(np.float32)
m, s = z.mean((0, 1, 2, 3)), z.std((0, 1, 2, 3))
x = (z - m) / s
rng = np.random.default_rng(0); perm = rng.permutation(n); ntest = 256
xtest, xtrain = jnp.asarray(x[perm[:ntest]]), x[perm[ntest:]]


class Encoder(nn.Module):
  @nn.compact
  def __call__(self, x):  # [B, G, G, G, D] -> mean, log_sigma [B, U]
    h = nn.gelu(nn.Conv(W, (3, 3, 3))(x))
    h = nn.gelu(nn.Conv(2 * W, (3, 3, 3), strides=2)(h))       # G/2
    h = nn.gelu(nn.Conv(2 * W, (3, 3, 3), strides=2)(h))       # G/4
    h = h.reshape(h.shape[0], -1)
    h = nn.gelu(nn.Dense(4 * W)(h))
    o = nn.Dense(2 * U)(h)
    return o[:, :U], jnp.clip(o[:, U:], -7, 3)


class Decoder(nn.Module):
  @nn.compact
  def __call__(self, u):  # [B, U] -> mean, log_sigma [B, G, G, G, D]
    g = G // 4
    h = nn.gelu(nn.Dense(4 * W)(u))
    h = nn.gelu(nn.Dense(g ** 3 * 2 * W)(h)).reshape(-1, g, g, g, 2 * W)
    for width in (2 * W, W):
      h = jnp.repeat(jnp.repeat(jnp.repeat(h, 2, 1), 2, 2), 2, 3)
      h = nn.gelu(nn.Conv(width, (3, 3, 3))(h))
      h = h + nn.gelu(nn.Conv(width, (3, 3, 3))(h))
    o = nn.Conv(2 * D, (1, 1, 1))(h)
    return o[..., :D], jnp.clip(o[..., D:], -7, 3)


enc, dec = Encoder(), Decoder()


def gauss_lp(x, mu, ls):
  return -0.5 * jnp.square((x - mu) * jnp.exp(-ls)) - ls - 0.5 * math.log(2 * math.pi)


def elbo(p, x, key):  # [B] nats of normalised latents
  mu, ls = enc.apply(p["enc"], x)
  u = mu + jnp.exp(ls) * jax.random.normal(key, mu.shape)
  dm, dls = dec.apply(p["dec"], u)
  rec = gauss_lp(x, dm, dls).sum((1, 2, 3, 4))
  kl = 0.5 * jnp.sum(jnp.square(mu) + jnp.exp(2 * ls) - 1 - 2 * ls, -1)
  return rec - kl


def iwae(p, x, key, k=64):  # [B] a tighter bound on log p(x), from k codes per latent
  mu, ls = enc.apply(p["enc"], x)
  eps = jax.random.normal(key, (k,) + mu.shape)
  u = mu + jnp.exp(ls) * eps
  def one(uk):
    dm, dls = dec.apply(p["dec"], uk)
    return (gauss_lp(x, dm, dls).sum((1, 2, 3, 4)) + gauss_lp(uk, 0.0, 0.0).sum(-1)
            - gauss_lp(uk, mu, ls).sum(-1))
  lw = jax.lax.map(one, u)
  return jax.nn.logsumexp(lw, 0) - math.log(k)


key = jax.random.PRNGKey(0)
p = {"enc": enc.init(key, xtest[:1]), "dec": dec.init(key, jnp.zeros((1, U)))}
print(f"{sum(a.size for a in jax.tree.leaves(p))} parameters", flush=True)
sched = optax.warmup_cosine_decay_schedule(0.0, 1e-3, 100, max(steps, 200), 1e-5)
opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(sched, weight_decay=1e-4))
ost = opt.init(p)


@jax.jit
def train_step(p, ost, xb, key):
  l, g = jax.value_and_grad(lambda p: -jnp.mean(elbo(p, xb, key)) / (C * D))(p)
  u, ost = opt.update(g, ost, p)
  return optax.apply_updates(p, u), ost, l


ev_elbo = jax.jit(lambda p, x, k: -jnp.mean(elbo(p, x, k)) / (C * D))
ev_iwae = jax.jit(lambda p, x, k: -jnp.mean(iwae(p, x, k)) / (C * D))
logdet = float(np.sum(np.log(s))) / D  # per number
gauss = float(0.5 * math.log(2 * math.pi) + 0.5 * jnp.mean(xtest ** 2))
if steps == 0:
  p = jax.tree.map(jnp.asarray, np.load(out, allow_pickle=True).item()['params'])
tt = time.time(); best = (1e9, p)
for it in range(steps):
  idx = rng.integers(0, len(xtrain), BATCH)
  key, k1 = jax.random.split(key)
  p, ost, l = train_step(p, ost, jnp.asarray(xtrain[idx]), k1)
  if it % 250 == 0 or it == steps - 1:
    te = float(np.mean([float(ev_elbo(p, xtest[i:i + 128], jax.random.PRNGKey(i))) for i in range(0, ntest, 128)]))
    if te < best[0]:
      best = (te, p)
    print(f"step {it}: train {float(l):.4f} held-out -ELBO {te:.4f} nats/number (N(0, I) {gauss:.4f}) "
          f"({time.time() - tt:.0f} s)", flush=True)
p = best[1]
best = best if steps else (float(np.mean([float(ev_elbo(p, xtest[i:i + 128], jax.random.PRNGKey(i))) for i in range(0, ntest, 128)])), p)
ti = float(np.mean([float(ev_iwae(p, xtest[i:i + 32], jax.random.PRNGKey(i))) for i in range(0, ntest, 32)]))
print(f"best held-out -ELBO {best[0] + logdet:.4f}, -IWAE(64) {ti + logdet:.4f} nats per number, unnormalised "
      f"(Gaussian rank 128: 1.2539, cell transformer: 1.2368)", flush=True)
if out and steps:
  np.save(out, {"params": jax.device_get(p), "m": m, "s": s, "U": U, "W": W}, allow_pickle=True)
if out:

  from nerf_vae_jax.evaluation import probe_net, sample_metrics
  probe = probe_net.load_or_train(config.data.name, config.data.data_dir)
  src = source.SceneSource(config.data.name, "test", config.data.data_dir)

  @functools.partial(jax.jit, static_argnums=1)
  def draw(key, num_u):
    k1, k2 = jax.random.split(key)
    u = jax.random.normal(k1, (num_u, U))
    dm, dls = dec.apply(p["dec"], u)
    xs = dm + jnp.exp(dls) * jax.random.normal(k2, dm.shape)
    return (xs * s + m).reshape(num_u, C, D)

  def sampler(model_, params_, key, num, temperature=1.0):
    return draw(key, num)
  print(f"sample std {float(draw(jax.random.PRNGKey(1), 8).std()):.3f}, latents {float(z.std()):.3f}")
  t1 = time.time()
  met, _ = sample_metrics.measure(model, params, src, probe, num_scenes=128, sample_prior=sampler, prior_name="vae")
  print("VAE prior:", sample_metrics.summary_line(met), f"({time.time() - t1:.0f} s)", flush=True)
