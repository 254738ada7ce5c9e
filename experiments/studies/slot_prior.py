"""Study: a second-stage VAE with per-object codes, learned without labels, then a Gaussian fitted to its codes.
K slots, each a position and an appearance code, and one scene code; the decoder splats each slot onto the cells as
a bump at its position (the layout study's features, with learned codes in place of the labels) and a small 3-D
convolutional net gives every cell's mean and scale; an encoder over the cells gives the slots' Gaussian posterior.
Fitted by its ELBO, with the cells' expected log-density under each scene's whole posterior. Then sampled three
ways: the codes of unseen training scenes (what the slot bottleneck keeps), a full-covariance Gaussian fitted to
the codes of the training scenes (the moments of the aggregate posterior), and that Gaussian at temperature 0.8.
python experiments/studies/slot_prior.py RUN NUM_SCENES STEPS WIDTH [SCENES [PICTURE.png]]
(RESULTS.md: run long61a, 4096 1500 64 128, 8 host devices). Saves the slot VAE's parameters to RUN_slots.pkl."""
import math, sys, time
import flax.linen as nn
import jax, jax.numpy as jnp, numpy as np, optax
from nerf_vae_jax.train import run_dir
from nerf_vae_jax.data import source
from nerf_vae_jax.evaluation import probe_net, sample_metrics, second_stage
from nerf_vae_jax.models import grid

workdir, n, steps, width = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
num = int(sys.argv[5]) if len(sys.argv) > 5 else 128
BATCH, K, A, S = 32, 4, 8, 8  # slots, appearance numbers per slot, scene code
U = K * (3 + A) + S
config, model, spec, params, step = run_dir.restore_params(workdir, None)
train = source.SceneSource(config.data.name, "train", config.data.data_dir)
G, D, R = model.grid_size, model.latent_dim, model.scene_radius
centres = jnp.asarray(grid.cell_centres(G, R))  # [C, 3]

t0 = time.time()
means, variances = second_stage.posterior_moments(model, params, train.__getitem__, n, log=lambda *a: None)
mu = means.reshape(n, G, G, G, D); var = variances.reshape(n, G, G, G, D)
print(f"{n} posteriors ({time.time() - t0:.0f} s)", flush=True)
ntest = 256


class Encoder(nn.Module):
  @nn.compact
  def __call__(self, m):  # [B, G, G, G, D] -> mean, log sigma [B, U]
    h = nn.gelu(nn.Conv(width, (3, 3, 3))(m))
    h = nn.gelu(nn.Conv(width, (3, 3, 3), strides=2)(h))
    h = nn.gelu(nn.Conv(width, (3, 3, 3), strides=2)(h))
    h = nn.gelu(nn.Dense(4 * width)(h.reshape(h.shape[0], -1)))
    o = nn.Dense(2 * U)(h)
    return o[:, :U], jnp.clip(o[:, U:], -7, 2)


class Decoder(nn.Module):
  @nn.compact
  def __call__(self, u):  # [B, U] -> mean, log scale [B, G, G, G, D]
    b = u.shape[0]
    slots, scene = u[:, :K * (3 + A)].reshape(b, K, 3 + A), u[:, K * (3 + A):]
    pos = 0.9 * R * jnp.tanh(slots[..., :3])  # [B, K, 3]
    app = slots[..., 3:]
    size = 0.1 + jax.nn.softplus(nn.Dense(1)(app))[..., 0]  # [B, K]
    d2 = jnp.sum(jnp.square(centres[None, :, None] - pos[:, None]), -1)  # [B, C, K]
    w = jnp.exp(-0.5 * d2 / jnp.square(size)[:, None])
    f = jnp.einsum("bck,bka->bca", w, jnp.concatenate([jnp.ones((b, K, 1)), app], -1))
    f = jnp.concatenate([f, jnp.broadcast_to(scene[:, None], (b, G ** 3, S)),
                         jnp.broadcast_to(centres[None] / R, (b, G ** 3, 3))], -1).reshape(b, G, G, G, -1)
    h = nn.gelu(nn.Conv(width, (3, 3, 3))(f))
    h = h + nn.gelu(nn.Conv(width, (3, 3, 3))(h))
    h = nn.gelu(nn.Dense(width)(h))
    o = nn.Dense(2 * D)(h)
    return o[..., :D], jnp.clip(o[..., D:], -5, 3)


enc, dec = Encoder(), Decoder()


def neg_elbo(p, m, v, key):  # per number of the cells, q = N(m, v) each scene's posterior
  qm, qls = enc.apply(p["enc"], m)
  u = qm + jnp.exp(qls) * jax.random.normal(key, qm.shape)
  mean, ls = dec.apply(p["dec"], u)
  rec = jnp.sum(0.5 * (jnp.square(m - mean) + v) * jnp.exp(-2 * ls) + ls + 0.5 * math.log(2 * math.pi), (1, 2, 3, 4))
  kl = 0.5 * jnp.sum(jnp.square(qm) + jnp.exp(2 * qls) - 1 - 2 * qls, -1)
  return jnp.mean(rec + kl) / (G ** 3 * D)


key = jax.random.PRNGKey(0)
p = {"enc": enc.init(key, jnp.asarray(mu[:1])), "dec": dec.init(key, jnp.zeros((1, U)))}
opt = optax.chain(optax.clip_by_global_norm(1.0),
                  optax.adamw(optax.warmup_cosine_decay_schedule(0.0, 2e-3, 100, max(steps, 200), 1e-5),
                              weight_decay=1e-4))
ost = opt.init(p)


@jax.jit
def train_step(p, ost, m, v, key):
  l, g = jax.value_and_grad(neg_elbo)(p, m, v, key)
  u, ost = opt.update(g, ost, p)
  return optax.apply_updates(p, u), ost, l


ev = jax.jit(neg_elbo)
rng = np.random.default_rng(0)
for it in range(steps):
  b = rng.integers(ntest, n, BATCH)
  key, k1 = jax.random.split(key)
  p, ost, l = train_step(p, ost, mu[b], var[b], k1)
  if it % 250 == 0 or it == steps - 1:
    h = float(ev(p, mu[:ntest], var[:ntest], jax.random.PRNGKey(1)))
    print(f"step {it}: train {float(l):.4f}, held-out -ELBO {h:.4f} nats per number ({time.time() - t0:.0f} s)",
          flush=True)

import pickle
pickle.dump(jax.device_get(p), open(workdir.rstrip("/") + "_slots.pkl", "wb"))
draw_dec = jax.jit(lambda u: dec.apply(p["dec"], u))
enc_j = jax.jit(lambda m: enc.apply(p["enc"], m))
qms, qss = [], []
for i in range(0, n, 256):
  a, b_ = enc_j(mu[i:i + 256]); qms.append(np.asarray(a)); qss.append(np.asarray(jnp.exp(2 * b_)))
qm, qv = np.concatenate(qms), np.concatenate(qss)  # [n, U]
fit_m = qm[ntest:].mean(0)
fit_c = np.cov(qm[ntest:], rowvar=False) + np.diag(qv[ntest:].mean(0))  # the moments of the aggregate posterior
chol = np.linalg.cholesky(fit_c + 1e-6 * np.eye(U))
print("code scales: aggregate std per number", np.round(np.sqrt(np.diag(fit_c)), 2), flush=True)


def decode_draw(u, k2):
  mean, ls = draw_dec(u)
  return (mean + jnp.exp(ls) * jax.random.normal(k2, mean.shape)).reshape((u.shape[0],) + model.latent_shape)


def gauss_sampler(temperature):
  def sampler(model_, params_, key, k, temperature_=1.0):
    k1, k2 = jax.random.split(key)
    u = fit_m + temperature * jax.random.normal(k1, (k, U)) @ chol.T
    return decode_draw(u, k2)
  return sampler


def held_out_sampler(model_, params_, key, k, temperature_=1.0):  # the slot codes of unseen training scenes
  k1, k2 = jax.random.split(key)
  u = qm[:k] + np.sqrt(qv[:k]) * jax.random.normal(k1, (k, U))
  return decode_draw(u, k2)


probe = probe_net.load_or_train(config.data.name, config.data.data_dir)
test = source.SceneSource(config.data.name, "test", config.data.data_dir)
for name, sampler in (("slot codes of unseen training scenes", held_out_sampler),
                      ("Gaussian over the slot codes", gauss_sampler(1.0)),
                      ("Gaussian over the slot codes, temperature 0.8", gauss_sampler(0.8))):
  for seed in (0, 1):
    t1 = time.time()
    met, _ = sample_metrics.measure(model, params, test, probe, num_scenes=num, seed=seed, sample_prior=sampler,
                                    prior_name="slots")
    print(f"{name}, seed {seed}:", sample_metrics.summary_line(met), f"({time.time() - t1:.0f} s)", flush=True)
sampler = gauss_sampler(1.0)
if len(sys.argv) > 6:
  from nerf_vae_jax import visualize
  tc = [test[i] for i in range(12)]
  intr = np.stack([s["intrinsics"][:1] for s in tc]); c2w = np.stack([s["cam_to_world"][:1] for s in tc])
  r = sample_metrics.render_latents(model, params, np.asarray(sampler(None, None, jax.random.PRNGKey(0), 12)),
                                    intr, c2w, *tc[0]["images"].shape[1:3])
  drawn = np.round(np.clip(r["rgb"][:, 0], 0, 1) * 255).astype(np.uint8)
  visualize.save_png(sys.argv[6], visualize.grid([[s["images"][0] for s in tc], list(drawn)]), scale=2)
