"""Study: how good would samples be if a prior knew the objects? A Gaussian over the cells given a scene's
layout (its objects' positions, sizes, shapes, colours and rotations, its backdrop and light: the labels
shape_scenes stores), p(cells | layout), each cell's mean and scale from a small 3-D convolutional net of
features that place each object on the grid; fitted by the expected log-density E_q[log p(z | layout)] to
whole posteriors of training scenes. Sampled with the layouts of other training scenes, never fitted.
python experiments/studies/layout_prior.py RUN NUM_SCENES STEPS WIDTH [SCENES [PICTURE.png]]
(RESULTS.md: run long61a, 4096 1500 32 128, 8 host devices)."""
import math, sys, time
import flax.linen as nn
import jax, jax.numpy as jnp, numpy as np, optax
from nerf_vae_jax.train import run_dir
from nerf_vae_jax.data import source
from nerf_vae_jax.evaluation import probe_net, sample_metrics, second_stage
from nerf_vae_jax.models import grid

workdir, n, steps, width = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
num = int(sys.argv[5]) if len(sys.argv) > 5 else 128
BATCH, NSHAPES = 32, 4
config, model, spec, params, step = run_dir.restore_params(workdir, None)
train = source.SceneSource(config.data.name, "train", config.data.data_dir)
G, D, R = model.grid_size, model.latent_dim, model.scene_radius
centres = np.asarray(grid.cell_centres(G, R))  # [C, 3]


def features(scene):  # [G, G, G, F]: objects splatted on the cells, plus the scene's backdrop, light, cell position
  o = scene["objects"]
  d2 = np.sum(np.square(centres[:, None] - o["position"][None]), -1)  # [C, O]
  w = np.exp(-0.5 * d2 / np.square(o["size"])[None])
  per = np.concatenate([np.ones((len(o["size"]), 1)), o["color"], np.eye(NSHAPES)[o["shape"]], o["size"][:, None],
                        np.sin(o["rotation"])[:, None], np.cos(o["rotation"])[:, None]], -1)  # [O, 11]
  f = np.concatenate([w @ per, np.broadcast_to(np.concatenate([scene["background"], scene["light_direction"]]),
                                               (len(centres), 6)), centres / R], -1)
  return f.reshape(G, G, G, -1).astype(np.float32)


t0 = time.time()
means, variances = second_stage.posterior_moments(model, params, train.__getitem__, n, log=lambda *a: None)
feats = np.stack([features(train[i]) for i in range(n)])
mu = means.reshape(n, G, G, G, D); var = variances.reshape(n, G, G, G, D)
print(f"{n} posteriors and layouts ({time.time() - t0:.0f} s); features {feats.shape[-1]}", flush=True)
ntest = 256
tr, te = slice(ntest, n), slice(0, ntest)


class Net(nn.Module):
  @nn.compact
  def __call__(self, f):  # [B, G, G, G, F] -> mean, log scale [B, G, G, G, D]
    h = nn.gelu(nn.Conv(width, (3, 3, 3))(f))
    h = h + nn.gelu(nn.Conv(width, (3, 3, 3))(h))
    h = nn.gelu(nn.Dense(width)(h))
    o = nn.Dense(2 * D)(h)
    return o[..., :D], jnp.clip(o[..., D:], -5, 3)


net = Net()


def nll(p, f, m, v):  # -E_q[log p(z | layout)] per number, q = N(m, v)
  mean, ls = net.apply(p, f)
  return jnp.mean(0.5 * (jnp.square(m - mean) + v) * jnp.exp(-2 * ls) + ls + 0.5 * math.log(2 * math.pi))


p = net.init(jax.random.PRNGKey(0), jnp.asarray(feats[:1]))
opt = optax.adamw(optax.warmup_cosine_decay_schedule(0.0, 2e-3, 100, max(steps, 200), 1e-5), weight_decay=1e-4)
ost = opt.init(p)


@jax.jit
def train_step(p, ost, f, m, v):
  l, g = jax.value_and_grad(nll)(p, f, m, v)
  u, ost = opt.update(g, ost, p)
  return optax.apply_updates(p, u), ost, l


ev = jax.jit(nll)
rng = np.random.default_rng(0)
idx_tr = np.arange(n)[tr]
for it in range(steps):
  b = rng.choice(idx_tr, BATCH)
  p, ost, l = train_step(p, ost, feats[b], mu[b], var[b])
  if it % 250 == 0 or it == steps - 1:
    h = float(ev(p, feats[te], mu[te], var[te]))
    print(f"step {it}: train {float(l):.4f}, held-out -E_q log p(z | layout) {h:.4f} nats per number "
          f"({time.time() - t0:.0f} s)", flush=True)
# The same number for a Gaussian without the layout (one mean and scale per number, from the training part).
m0, v0 = mu[tr].mean(0), (var[tr] + np.square(mu[tr] - mu[tr].mean(0))).mean(0)
base = np.mean(0.5 * (np.square(mu[te] - m0) + var[te]) / v0 + 0.5 * np.log(v0) + 0.5 * math.log(2 * math.pi))
print(f"without the layout (a diagonal Gaussian): {base:.4f} nats per number", flush=True)

# Samples: the layouts of training scenes n .. n + num (not fitted), each cell mean + scale x noise.
new = np.stack([features(train[n + i]) for i in range(num)])
apply = jax.jit(net.apply)


def sampler(model_, params_, key, k, temperature=1.0):
  mean, ls = apply(p, new[:k])
  z = mean + temperature * jnp.exp(ls) * jax.random.normal(key, mean.shape)
  return z.reshape((k,) + model.latent_shape)


probe = probe_net.load_or_train(config.data.name, config.data.data_dir)
test = source.SceneSource(config.data.name, "test", config.data.data_dir)
for seed in (0, 1):
  t1 = time.time()
  met, _ = sample_metrics.measure(model, params, test, probe, num_scenes=num, seed=seed, sample_prior=sampler,
                                  prior_name="layout")
  print(f"layout prior, seed {seed}:", sample_metrics.summary_line(met), f"({time.time() - t1:.0f} s)", flush=True)

if len(sys.argv) > 6:  # a picture: each layout's own scene, view 0 (top), and its sample from that camera
  from nerf_vae_jax import visualize
  k = min(12, num)
  own = [train[n + i] for i in range(k)]
  intr = np.stack([s["intrinsics"][:1] for s in own]); c2w = np.stack([s["cam_to_world"][:1] for s in own])
  r = sample_metrics.render_latents(model, params, np.asarray(sampler(None, None, jax.random.PRNGKey(0), k)),
                                    intr, c2w, *own[0]["images"].shape[1:3])
  drawn = np.round(np.clip(r["rgb"][:, 0], 0, 1) * 255).astype(np.uint8)
  visualize.save_png(sys.argv[6], visualize.grid([[s["images"][0] for s in own], list(drawn)]), scale=2)
