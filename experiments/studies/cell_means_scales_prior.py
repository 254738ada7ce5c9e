"""Study: the cell transformer fitted to each training scene's posterior means and log scales (32 numbers a cell),
sampled as mean + scale x noise (not a density of the latents: no bound).
  cell_means_scales_prior.py WORKDIR NUM_SCENES STEPS WIDTH LAYERS [OUT.npy]   (RESULTS: long61a 8192 800 64 3)"""
import math, sys, time
import jax, jax.numpy as jnp, numpy as np, optax
from nerf_vae_jax.train import run_dir
from nerf_vae_jax.data import source
from nerf_vae_jax.evaluation import second_stage

workdir, n, steps, width, layers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
out = sys.argv[6] if len(sys.argv) > 6 else None
HEADS, K, BATCH = 4, 8, 32
config, model, spec, params, step = run_dir.restore_params(workdir, None)
train = source.SceneSource(config.data.name, "train", config.data.data_dir)
t0 = time.time()
from nerf_vae_jax.models import nerf_vae
from nerf_vae_jax.evaluation import protocol
@jax.jit
def enc(context, key):
  q = nerf_vae.infer(model, params, context)
  if not q.hierarchical:
    return q.mean, q.scale
  top = q.top_mean
  (mean, scale), _, _ = nerf_vae._cells_given_top(model, params, q, top)
  return mean, scale
means, scales = [], []
for start in range(0, n, 32):
  batch = protocol.context_batch([train[i] for i in range(start, start + 32)], protocol.CONTEXT_CANDIDATES)
  mu, sc = enc({k: v for k, v in batch.items() if k.startswith("context")}, jax.random.PRNGKey(start))
  means.append(np.asarray(mu).reshape(32, -1)); scales.append(np.asarray(sc).reshape(32, -1))
mu_all = np.concatenate(means).reshape(n, -1, 16)
ls_all = np.log(np.concatenate(scales).reshape(n, -1, 16))
z = np.concatenate([mu_all, ls_all], -1).reshape(n, -1)  # each cell: its posterior mean and log scale
avg_scale = np.exp(ls_all).mean(0)
print("average posterior scale", avg_scale.mean(), avg_scale.min(), avg_scale.max(), flush=True)
C, D = model.grid_size ** 3, 2 * model.latent_dim
z = z.reshape(n, C, D).astype(np.float32)
m, s = z.mean((0, 1)), z.std((0, 1))
x = (z - m) / s
rng = np.random.default_rng(0); perm = rng.permutation(n); ntest = 512
xtest, xtrain = jnp.asarray(x[perm[:ntest]]), x[perm[ntest:]]
print(f"latents {z.shape} ({time.time() - t0:.0f} s)", flush=True)


def dense(key, i, o):
  return {"w": jax.random.normal(key, (i, o)) / math.sqrt(i), "b": jnp.zeros(o)}


def init(key):
  ks = iter(jax.random.split(key, 8 + 4 * layers))
  p = {"inp": dense(next(ks), D, width), "pos": 0.02 * jax.random.normal(next(ks), (C, width)),
       "start": jnp.zeros(width), "blocks": [],
       "ln": {"g": jnp.ones(width), "b": jnp.zeros(width)},
       "head": {"w": jnp.zeros((width, K * (1 + 2 * D))), "b": jnp.zeros(K * (1 + 2 * D))}}
  for _ in range(layers):
    p["blocks"].append({"ln1": {"g": jnp.ones(width), "b": jnp.zeros(width)}, "qkv": dense(next(ks), width, 3 * width),
                        "o": dense(next(ks), width, width), "ln2": {"g": jnp.ones(width), "b": jnp.zeros(width)},
                        "fc1": dense(next(ks), width, 4 * width), "fc2": dense(next(ks), 4 * width, width)})
  # Mixture means spread at the start.
  p["head"]["b"] = p["head"]["b"].at[K:K + K * D].set(0.5 * jax.random.normal(next(ks), (K * D,)))
  return p


def ln(p, h):
  mu = h.mean(-1, keepdims=True); var = h.var(-1, keepdims=True)
  return (h - mu) * jax.lax.rsqrt(var + 1e-5) * p["g"] + p["b"]


def lin(p, h):
  return h @ p["w"] + p["b"]


def inputs(p, x):  # x [B, C, D] -> [B, C, W]: cell t sees cells < t
  h = lin(p["inp"], x[:, :-1])
  h = jnp.concatenate([jnp.broadcast_to(p["start"], (x.shape[0], 1, width)), h], 1)
  return h + p["pos"]


def attend(q, k, v, mask):
  dh = q.shape[-1]
  a = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(dh)
  a = jnp.where(mask, a, -1e9)
  return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(a, -1), v)


def trunk(p, h):
  b, t, _ = h.shape
  mask = jnp.tril(jnp.ones((t, t), bool))
  for blk in p["blocks"]:
    q, k, v = jnp.split(lin(blk["qkv"], ln(blk["ln1"], h)), 3, -1)
    sh = lambda a: a.reshape(b, t, HEADS, width // HEADS)
    h = h + lin(blk["o"], attend(sh(q), sh(k), sh(v), mask).reshape(b, t, width))
    h = h + lin(blk["fc2"], jax.nn.gelu(lin(blk["fc1"], ln(blk["ln2"], h))))
  return ln(p["ln"], h)


def mixture(p, h):
  out = lin(p["head"], h)
  logits = out[..., :K]
  mu = out[..., K:K + K * D].reshape(h.shape[:-1] + (K, D))
  log_sigma = jnp.clip(out[..., K + K * D:].reshape(h.shape[:-1] + (K, D)), -7.0, 3.0)
  return jax.nn.log_softmax(logits, -1), mu, log_sigma


def cell_log_prob(p, h, x):  # x [..., D]
  logw, mu, ls = mixture(p, h)
  lp = -0.5 * jnp.square((x[..., None, :] - mu) * jnp.exp(-ls)) - ls - 0.5 * math.log(2 * math.pi)
  return jax.nn.logsumexp(logw + lp.sum(-1), -1)


def log_prob(p, x):  # [B] nats, of normalised latents
  return cell_log_prob(p, trunk(p, inputs(p, x)), x).sum(-1)


def loss(p, x):
  return -jnp.mean(log_prob(p, x)) / (C * D)


def sample(p, key, num, temperature=1.0):
  dh = width // HEADS
  ck = jnp.zeros((layers, num, C, HEADS, dh)); cv = jnp.zeros_like(ck)
  def body(t, carry):
    ck, cv, prev, xs, key = carry
    key, k1, k2 = jax.random.split(key, 3)
    h = jnp.where(t == 0, p["start"], lin(p["inp"], prev)) + p["pos"][t]  # [num, W]
    mask = (jnp.arange(C) <= t)[None, None, None, :]
    for l, blk in enumerate(p["blocks"]):
      q, k, v = jnp.split(lin(blk["qkv"], ln(blk["ln1"], h)), 3, -1)
      ck = ck.at[l, :, t].set(k.reshape(num, HEADS, dh)); cv = cv.at[l, :, t].set(v.reshape(num, HEADS, dh))
      a = attend(q.reshape(num, 1, HEADS, dh), ck[l], cv[l], mask).reshape(num, width)
      h = h + lin(blk["o"], a)
      h = h + lin(blk["fc2"], jax.nn.gelu(lin(blk["fc1"], ln(blk["ln2"], h))))
    logw, mu, ls = mixture(p, ln(p["ln"], h))
    comp = jax.random.categorical(k1, logw, -1)
    pick = lambda a: jnp.take_along_axis(a, comp[:, None, None], 1)[:, 0]
    x = pick(mu) + temperature * jnp.exp(pick(ls)) * jax.random.normal(k2, (num, D))
    return ck, cv, x, xs.at[:, t].set(x), key
  _, _, _, xs, _ = jax.lax.fori_loop(0, C, body, (ck, cv, jnp.zeros((num, D)), jnp.zeros((num, C, D)), key))
  return xs


p = init(jax.random.PRNGKey(0))
print(f"{sum(a.size for a in jax.tree.leaves(p))} parameters", flush=True)
sched = optax.warmup_cosine_decay_schedule(0.0, 1e-3, 100, steps, 1e-5)
opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(sched, weight_decay=1e-4))
ost = opt.init(p)


@jax.jit
def train_step(p, ost, xb):
  l, g = jax.value_and_grad(loss)(p, xb)
  u, ost = opt.update(g, ost, p)
  return optax.apply_updates(p, u), ost, l


evaluate = jax.jit(loss)
gauss = float(0.5 * math.log(2 * math.pi) + 0.5 * jnp.mean(xtest ** 2))
tt = time.time()
for it in range(steps):
  idx = rng.integers(0, len(xtrain), BATCH)
  p, ost, l = train_step(p, ost, jnp.asarray(xtrain[idx]))
  if it % 200 == 0 or it == steps - 1:
    te = float(np.mean([float(evaluate(p, xtest[i:i + 128])) for i in range(0, ntest, 128)]))
    print(f"step {it}: train {float(l):.4f} held-out {te:.4f} nats/dim (N(0, I) {gauss:.4f}) "
          f"({time.time() - tt:.0f} s)", flush=True)
logdet = C * float(np.sum(np.log(s)))
print(f"held-out nats per latent, unnormalised: {te * C * D + logdet:.1f}")
if out:
  np.save(out, {"params": jax.device_get(p), "m": m, "s": s, "width": width, "layers": layers}, allow_pickle=True)
  t1 = time.time()
  xs = jax.jit(sample, static_argnums=2)(p, jax.random.PRNGKey(1), 8)
  print(f"sampled 8 in {time.time() - t1:.1f} s; sample std {float(xs.std()):.3f}, data {float(xtest.std()):.3f}")

  from nerf_vae_jax.evaluation import probe_net, sample_metrics
  probe = probe_net.load_or_train(config.data.name, config.data.data_dir)
  src = source.SceneSource(config.data.name, "test", config.data.data_dir)
  draw = jax.jit(sample, static_argnums=2)
  import functools
  def sampler(model_, params_, key, num, temperature=1.0):
    k1, k2 = jax.random.split(key)
    cells = draw(p, k1, num) * s + m
    mu, log_scale = cells[..., :16], cells[..., 16:]
    return (mu + jnp.exp(log_scale) * jax.random.normal(k2, mu.shape)).reshape((num,) + model.latent_shape)
  t1 = time.time()
  met, _ = sample_metrics.measure(model, params, src, probe, num_scenes=128, sample_prior=sampler, prior_name="ar")
  print("AR prior:", sample_metrics.summary_line(met), f"({time.time() - t1:.0f} s)", flush=True)
