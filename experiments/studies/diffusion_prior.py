"""Prototype: a diffusion prior over the grid latent. The cells are cut into 2x2x2 patches (64 tokens of
8D numbers), a small transformer with the noise level as adaptive LayerNorm predicts v, trained on one
posterior sample per training scene (cosine schedule, continuous time), sampled by ancestral steps.
python experiments/studies/diffusion_prior.py RUN NUM_SCENES STEPS WIDTH LAYERS SAMPLE_STEPS [OUT [SEEDS [SCENES]]]
(RESULTS.md: RUN 8192 3000 128 4 100 OUT 1 128 on run long61a, 8 host devices)."""
import functools, math, os, sys, time
import jax, jax.numpy as jnp, numpy as np, optax
from nerf_vae_jax.train import run_dir
from nerf_vae_jax.data import source
from nerf_vae_jax.evaluation import second_stage

workdir, n, steps, width, layers, sample_steps = sys.argv[1], *map(int, sys.argv[2:7])
out = sys.argv[7] if len(sys.argv) > 7 else None
HEADS, BATCH, P = 4, 64, 2
config, model, spec, params, step = run_dir.restore_params(workdir, None)
train = source.SceneSource(config.data.name, "train", config.data.data_dir)
t0 = time.time()
cache = os.path.join(workdir, f"latents_{n}.npy")  # one posterior sample per training scene
try:
  z = np.load(cache)
except FileNotFoundError:
  z = second_stage.posterior_latents(model, params, train.__getitem__, n, log=print)
  np.save(cache, z)
G, D = model.grid_size, model.latent_dim
C, g = G ** 3, G // P
T, F = g ** 3, P ** 3 * D  # tokens, numbers per token
z = z.reshape(n, C, D).astype(np.float32)
m, s = z.mean((0, 1)), z.std((0, 1))
x = (z - m) / s
rng = np.random.default_rng(0); perm = rng.permutation(n); ntest = 256
xtest, xtrain = jnp.asarray(x[perm[:ntest]]), x[perm[ntest:]]
print(f"latents {z.shape} ({time.time() - t0:.0f} s)", flush=True)


def patchify(x):  # [B, C, D] -> [B, T, F]
  b = x.shape[0]
  x = x.reshape(b, g, P, g, P, g, P, D).transpose(0, 1, 3, 5, 2, 4, 6, 7)
  return x.reshape(b, T, F)


def unpatchify(t):  # [B, T, F] -> [B, C, D]
  b = t.shape[0]
  t = t.reshape(b, g, g, g, P, P, P, D).transpose(0, 1, 4, 2, 5, 3, 6, 7)
  return t.reshape(b, C, D)


def dense(key, i, o, scale=1.0):
  return {"w": scale * jax.random.normal(key, (i, o)) / math.sqrt(i), "b": jnp.zeros(o)}


def lin(p, h):
  return h @ p["w"] + p["b"]


def init(key):
  ks = iter(jax.random.split(key, 8 + 6 * layers))
  p = {"inp": dense(next(ks), F, width), "pos": 0.02 * jax.random.normal(next(ks), (T, width)),
       "t1": dense(next(ks), 64, width), "t2": dense(next(ks), width, width), "blocks": [],
       "ada": dense(next(ks), width, 2 * width, 0.0), "out": dense(next(ks), width, F, 0.0)}
  for _ in range(layers):
    p["blocks"].append({"ada": dense(next(ks), width, 6 * width, 0.0), "qkv": dense(next(ks), width, 3 * width),
                        "o": dense(next(ks), width, width), "fc1": dense(next(ks), width, 4 * width),
                        "fc2": dense(next(ks), 4 * width, width)})
  return p


def norm(h):
  mu = h.mean(-1, keepdims=True); var = h.var(-1, keepdims=True)
  return (h - mu) * jax.lax.rsqrt(var + 1e-5)


def embed_t(t):  # [B] in [0, 1] -> [B, 64]
  f = jnp.exp(jnp.linspace(0.0, math.log(1000.0), 32))
  a = t[:, None] * f[None] * 2 * math.pi / 4
  return jnp.concatenate([jnp.sin(a), jnp.cos(a)], -1)


def net(p, xt, t):  # xt [B, C, D] normalised, t [B] -> v [B, C, D]
  b = xt.shape[0]
  c = jax.nn.silu(lin(p["t2"], jax.nn.silu(lin(p["t1"], embed_t(t)))))  # [B, W]
  h = lin(p["inp"], patchify(xt)) + p["pos"]
  for blk in p["blocks"]:
    s1, b1, g1, s2, b2, g2 = jnp.split(lin(blk["ada"], c)[:, None], 6, -1)
    a = norm(h) * (1 + s1) + b1
    q, k, v = jnp.split(lin(blk["qkv"], a), 3, -1)
    sh = lambda u: u.reshape(b, T, HEADS, width // HEADS)
    w = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", sh(q), sh(k)) / math.sqrt(width // HEADS), -1)
    h = h + g1 * lin(blk["o"], jnp.einsum("bhqk,bkhd->bqhd", w, sh(v)).reshape(b, T, width))
    a = norm(h) * (1 + s2) + b2
    h = h + g2 * lin(blk["fc2"], jax.nn.gelu(lin(blk["fc1"], a)))
  s0, b0 = jnp.split(lin(p["ada"], c)[:, None], 2, -1)
  return unpatchify(lin(p["out"], norm(h) * (1 + s0) + b0))


def alpha_sigma(t):
  return jnp.cos(0.5 * math.pi * t), jnp.sin(0.5 * math.pi * t)


def loss_fn(p, x0, key):
  k1, k2 = jax.random.split(key)
  t = jax.random.uniform(k1, (x0.shape[0],), minval=1e-3, maxval=1 - 1e-3)
  eps = jax.random.normal(k2, x0.shape)
  a, s_ = alpha_sigma(t)[0][:, None, None], alpha_sigma(t)[1][:, None, None]
  xt = a * x0 + s_ * eps
  v = a * eps - s_ * x0
  return jnp.mean(jnp.square(net(p, xt, t) - v))


key = jax.random.PRNGKey(0)
p = init(key)
print(f"{sum(a.size for a in jax.tree.leaves(p))} parameters, {T} tokens of {F}", flush=True)
sched = optax.warmup_cosine_decay_schedule(0.0, 1e-3, 200, max(steps, 400), 1e-5)
opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(sched, weight_decay=1e-4))
ost = opt.init(p)
ema = p


@jax.jit
def train_step(p, ost, ema, xb, key):
  l, gr = jax.value_and_grad(loss_fn)(p, xb, key)
  u, ost = opt.update(gr, ost, p)
  p = optax.apply_updates(p, u)
  ema = jax.tree.map(lambda e, q: 0.998 * e + 0.002 * q, ema, p)
  return p, ost, ema, l


ev = jax.jit(loss_fn)
tt = time.time()
if steps == 0:
  ema = jax.tree.map(jnp.asarray, np.load(out, allow_pickle=True).item()["params"])
for it in range(steps):
  idx = rng.integers(0, len(xtrain), BATCH)
  key, k1 = jax.random.split(key)
  p, ost, ema, l = train_step(p, ost, ema, jnp.asarray(xtrain[idx]), k1)
  if it % 250 == 0 or it == steps - 1:
    te = float(np.mean([float(ev(ema, xtest[i:i + 128], jax.random.PRNGKey(i))) for i in range(0, ntest, 128)]))
    print(f"step {it}: train {float(l):.4f} held-out v-loss (EMA) {te:.4f} ({time.time() - tt:.0f} s)", flush=True)
if out and steps:
  np.save(out, {"params": jax.device_get(ema), "m": m, "s": s}, allow_pickle=True)


@functools.partial(jax.jit, static_argnums=1)
def draw(key, num):
  ts = jnp.linspace(1.0, 0.0, sample_steps + 1)
  key, k0 = jax.random.split(key)
  xt = jax.random.normal(k0, (num, C, D))

  def body(xt, inp):
    t, s_, k = inp
    at, st = alpha_sigma(t)
    as_, ss = alpha_sigma(s_)
    v = net(ema, xt, jnp.full((num,), t))
    x0 = at * xt - st * v
    ats = at / as_
    var_ts = st ** 2 - ats ** 2 * ss ** 2
    mean = ats * ss ** 2 / st ** 2 * xt + as_ * var_ts / st ** 2 * x0
    std = jnp.sqrt(jnp.maximum(var_ts * ss ** 2 / st ** 2, 0.0))
    xs = jnp.where(s_ > 0, mean + std * jax.random.normal(k, xt.shape), x0)
    return xs, None

  xt, _ = jax.lax.scan(body, xt, (ts[:-1], ts[1:], jax.random.split(key, sample_steps)))
  return xt * s + m


if out:
  from nerf_vae_jax.evaluation import probe_net, sample_metrics
  probe = probe_net.load_or_train(config.data.name, config.data.data_dir)
  src = source.SceneSource(config.data.name, "test", config.data.data_dir)
  zs = draw(jax.random.PRNGKey(1), 64)
  print(f"sample std {float(zs.std()):.3f}, latents {float(z.std()):.3f}", flush=True)
  for seed in (0, 1, 2)[:int(sys.argv[8]) if len(sys.argv) > 8 else 1]:
    t1 = time.time()
    met, _ = sample_metrics.measure(model, params, src, probe, num_scenes=int(sys.argv[9]) if len(sys.argv) > 9 else 128,
                                    seed=seed, sample_prior=lambda mo, pa, k, num, temperature=1.0: draw(k, num),
                                    prior_name="diffusion")
    print(f"diffusion prior, seed {seed}:", sample_metrics.summary_line(met), f"({time.time() - t1:.0f} s)", flush=True)
