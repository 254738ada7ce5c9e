"""A second-stage prior over the grid's cells: a causal transformer, each cell a mixture of Gaussians given
the cells before it.

The Gaussian of ``fitted_prior.py`` draws scenes with the data's coverage, but
its samples stay far from real ones (RESULTS.md, "How far are samples from
scenes?"): a scene is a few objects, each a blob of neighbouring cells with
related codes, and one Gaussian over all cells can only blend such blobs.
This prior is autoregressive over the G^3 cells in raster order:

  p2(z) = prod_t p(z_t | z_<t),  p(z_t | z_<t) = sum_k w_k N(z_t; mu_k, diag(sigma_k^2)),

with (w, mu, sigma) [K mixtures] read off a small pre-LN transformer whose
input at cell t is cell t-1's code plus a learned position embedding of t.
Each factor is a normalised density over the cell's D numbers, so p2 is a
proper density over all G^3 x D and can replace the model's prior in the
ELBO and the IWAE bound (``evaluation/second_stage.py``). The cells are
standardised per dimension (shift and scale, fitted to the data) and the
density carries that affine map's Jacobian.

Pure functions on a parameter pytree; sampling decodes one cell at a time
with a key/value cache, so it costs one pass of the network, not G^3.
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

HEADS = 4
MAX_LOG_SCALE = 3.0
MIN_LOG_SCALE = -7.0


class CellTransformer(NamedTuple):
  params: dict  # the network (``init``)
  shift: jax.Array  # [D]: cells are standardised as (z - shift) / scale
  scale: jax.Array  # [D]


def init(key, cells: int, dim: int, width: int = 64, layers: int = 3, mixtures: int = 8) -> dict:
  """The network's parameters for ``cells`` cells of ``dim`` numbers (``width`` divisible by HEADS)."""
  if width % HEADS:
    raise ValueError(f"width={width} must be divisible by {HEADS} heads.")
  keys = iter(jax.random.split(key, 3 + 4 * layers))
  dense = lambda i, o: {"w": jax.random.normal(next(keys), (i, o)) / math.sqrt(i), "b": jnp.zeros(o)}
  norm = lambda: {"g": jnp.ones(width), "b": jnp.zeros(width)}
  out = mixtures * (1 + 2 * dim)
  head_bias = jnp.zeros(out).at[mixtures:mixtures * (1 + dim)].set(  # mixtures start apart
      0.5 * jax.random.normal(next(keys), (mixtures * dim,)))
  return {"inp": dense(dim, width), "pos": 0.02 * jax.random.normal(next(keys), (cells, width)),
          "start": jnp.zeros(width),
          "blocks": [{"ln1": norm(), "qkv": dense(width, 3 * width), "o": dense(width, width), "ln2": norm(),
                      "fc1": dense(width, 4 * width), "fc2": dense(4 * width, width)} for _ in range(layers)],
          "ln": norm(), "head": {"w": jnp.zeros((width, out)), "b": head_bias}}


def _sizes(params):
  """(cells, dim, width, mixtures) of a parameter pytree."""
  cells, width = params["pos"].shape
  dim = params["inp"]["w"].shape[0]
  return cells, dim, width, params["head"]["b"].shape[0] // (1 + 2 * dim)


def _norm(p, h):
  mu, var = jnp.mean(h, -1, keepdims=True), jnp.var(h, -1, keepdims=True)
  return (h - mu) * jax.lax.rsqrt(var + 1e-5) * p["g"] + p["b"]


def _dense(p, h):
  return h @ p["w"] + p["b"]


def _attend(q, k, v, mask):
  """q [B, Q, H, dh], k and v [B, T, H, dh], mask [Q, T] (True: may attend) -> [B, Q, H, dh]."""
  logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
  return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(jnp.where(mask, logits, -1e9), -1), v)


def _block(blk, h, attention):
  """One pre-LN block on h [B, Q, W]; ``attention(q, k, v)`` ([B, Q, W] each -> [B, Q, W]) says what is attended."""
  q, k, v = jnp.split(_dense(blk["qkv"], _norm(blk["ln1"], h)), 3, -1)
  h = h + _dense(blk["o"], attention(q, k, v))
  return h + _dense(blk["fc2"], jax.nn.gelu(_dense(blk["fc1"], _norm(blk["ln2"], h))))


def _mixture(params, h):
  """The mixture over a cell from features h [..., W]: log weights [..., K], means and log scales [..., K, D]."""
  _, dim, _, k = _sizes(params)
  out = _dense(params["head"], _norm(params["ln"], h))
  mean = out[..., k:k * (1 + dim)].reshape(h.shape[:-1] + (k, dim))
  log_scale = jnp.clip(out[..., k * (1 + dim):].reshape(h.shape[:-1] + (k, dim)), MIN_LOG_SCALE, MAX_LOG_SCALE)
  return jax.nn.log_softmax(out[..., :k], -1), mean, log_scale


def _mixture_log_prob(mixture, x):
  """log sum_k w_k N(x; mu_k, sigma_k^2) [...] of x [..., D]."""
  log_w, mean, log_scale = mixture
  per_dim = -0.5 * jnp.square((x[..., None, :] - mean) * jnp.exp(-log_scale)) - log_scale - 0.5 * math.log(2 * math.pi)
  return jax.nn.logsumexp(log_w + per_dim.sum(-1), -1)


def standard_log_prob(params, x):
  """log p(x) [B] of standardised cells x [B, C, D], every cell given the ones before it in one pass."""
  cells, _, width, _ = _sizes(params)
  b = x.shape[0]
  h = jnp.concatenate([jnp.broadcast_to(params["start"], (b, 1, width)), _dense(params["inp"], x[:, :-1])], 1)
  h = h + params["pos"]
  heads_of = lambda a: a.reshape(b, cells, HEADS, width // HEADS)
  causal = jnp.tril(jnp.ones((cells, cells), bool))
  attention = lambda q, k, v: _attend(heads_of(q), heads_of(k), heads_of(v), causal).reshape(h.shape)
  for blk in params["blocks"]:
    h = _block(blk, h, attention)
  return jnp.sum(_mixture_log_prob(_mixture(params, h), x), -1)


def log_prob(prior: CellTransformer, z):
  """log p2(z) [B] of latents z [B, C x D] or [B, C, D] (the cells, flattened or not)."""
  cells, dim, _, _ = _sizes(prior.params)
  x = (z.reshape(z.shape[0], cells, dim) - prior.shift) / prior.scale
  return standard_log_prob(prior.params, x) - cells * jnp.sum(jnp.log(prior.scale))


def _decode(params, key, num: int, temperature: float = 1.0):
  """Standardised cells [num, C, D] drawn one at a time, and log p(x) [num] of what was drawn (at
  temperature 1, ``standard_log_prob`` of the same cells: a test holds the cache to the one-pass network)."""
  cells, dim, width, _ = _sizes(params)
  dh = width // HEADS
  layers = len(params["blocks"])
  heads_of = lambda a: a.reshape(num, 1, HEADS, dh)

  def step(t, carry):
    keys, values, prev, x, total, key = carry
    key, k_comp, k_noise = jax.random.split(key, 3)
    h = (jnp.where(t == 0, params["start"], _dense(params["inp"], prev)) + params["pos"][t])[:, None]  # [num, 1, W]
    mask = (jnp.arange(cells) <= t)[None]
    new_keys, new_values = [], []
    for i, blk in enumerate(params["blocks"]):
      def attention(q, k, v, i=i):  # cell t's key and value join the cache, and q reads cells 0..t
        new_keys.append(jax.lax.dynamic_update_slice(keys[i], heads_of(k), (0, t, 0, 0)))
        new_values.append(jax.lax.dynamic_update_slice(values[i], heads_of(v), (0, t, 0, 0)))
        return _attend(heads_of(q), new_keys[-1], new_values[-1], mask).reshape(num, 1, width)
      h = _block(blk, h, attention)
    keys, values = jnp.stack(new_keys), jnp.stack(new_values)
    mixture = _mixture(params, h[:, 0])
    log_w, mean, log_scale = mixture
    comp = jax.random.categorical(k_comp, log_w, -1)
    pick = lambda a: jnp.take_along_axis(a, comp[:, None, None], 1)[:, 0]
    cell = pick(mean) + temperature * jnp.exp(pick(log_scale)) * jax.random.normal(k_noise, (num, dim))
    total = total + _mixture_log_prob(mixture, cell)
    return keys, values, cell, x.at[:, t].set(cell), total, key

  cache = jnp.zeros((layers, num, cells, HEADS, dh))
  init_carry = (cache, cache, jnp.zeros((num, dim)), jnp.zeros((num, cells, dim)), jnp.zeros(num), key)
  _, _, _, x, total, _ = jax.lax.fori_loop(0, cells, step, init_carry)
  return x, total


def sample(prior: CellTransformer, key, num: int, temperature: float = 1.0):
  """Latents [num, C, D] from p2, reproducible from ``key`` (``temperature`` scales each cell's noise)."""
  x, _ = _decode(prior.params, key, num, temperature)
  return x * prior.scale + prior.shift


def fit(z, *, width: int = 64, layers: int = 3, mixtures: int = 8, steps: int = 1000, batch_size: int = 32,
        learning_rate: float = 1e-3, held_out: int = 256, eval_every: int = 100, seed: int = 0,
        log=print) -> tuple[CellTransformer, dict]:
  """p2 fitted to latents z [N, C, D] by maximum likelihood (Adam, cosine schedule).

  The last ``held_out`` latents are kept out of training; the parameters
  that score them best (every ``eval_every`` steps) are returned, so a long
  fit cannot overfit past its best point. Returns (prior, info), info the
  held-out nats per number: {"held_out_nats", "held_out_nats_at_init", "steps"}."""
  z = np.asarray(z, np.float32)
  n, cells, dim = z.shape
  if n <= held_out or held_out < 1:
    raise ValueError(f"fit needs more latents than held_out={held_out} (and held_out >= 1); got {n}.")
  shift, scale = z[:-held_out].mean((0, 1)), z[:-held_out].std((0, 1)) + 1e-6
  x = (z - shift) / scale
  train, test = x[:-held_out], jnp.asarray(x[-held_out:])
  params = init(jax.random.PRNGKey(seed), cells, dim, width, layers, mixtures)
  schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, min(100, steps // 10 + 1), steps,
                                                learning_rate / 100)
  opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=1e-4))
  numbers = cells * dim
  # The Jacobian of the standardisation, so that the nats are those of z itself.
  jacobian = float(np.sum(np.log(scale))) / dim
  loss = lambda p, xb: -jnp.mean(standard_log_prob(p, xb)) / numbers

  @jax.jit
  def train_step(p, state, xb):
    value, grads = jax.value_and_grad(loss)(p, xb)
    updates, state = opt.update(grads, state, p)
    return optax.apply_updates(p, updates), state, value

  total_log_prob = jax.jit(lambda p, xb: jnp.sum(standard_log_prob(p, xb)))
  evaluate = lambda p: -sum(float(total_log_prob(p, test[i:i + 64])) for i in range(0, held_out, 64)) / (
      held_out * numbers) + jacobian
  state, rng = opt.init(params), np.random.default_rng(seed)
  best = at_init = evaluate(params)
  best_params, t0 = params, time.time()
  for i in range(1, steps + 1):
    params, state, _ = train_step(params, state, jnp.asarray(train[rng.integers(0, len(train), batch_size)]))
    if i % eval_every == 0 or i == steps:
      nats = evaluate(params)
      if nats < best:
        best, best_params = nats, params
      log(f"  step {i}/{steps}: held-out {nats:.4f} nats per number (best {best:.4f}; {time.time() - t0:.0f} s)")
  prior = CellTransformer(best_params, jnp.asarray(shift), jnp.asarray(scale))
  return prior, {"held_out_nats": best, "held_out_nats_at_init": at_init, "steps": steps}


def save(path: str, prior: CellTransformer, **info) -> None:
  """To an .npz: the parameters (flattened by their paths), shift, scale and ``info``."""
  flat = {"param/" + jax.tree_util.keystr(k): np.asarray(v)
          for k, v in jax.tree_util.tree_leaves_with_path(prior.params)}
  np.savez(path, shift=np.asarray(prior.shift), scale=np.asarray(prior.scale),
           layers=len(prior.params["blocks"]), **flat, **{f"info_{k}": v for k, v in info.items()})


def load(path: str) -> tuple[CellTransformer, dict]:
  with np.load(path) as f:
    mixtures = f["param/['head']['b']"].shape[0] // (1 + 2 * f["shift"].shape[0])
    cells, width = f["param/['pos']"].shape
    template = init(jax.random.PRNGKey(0), cells, f["shift"].shape[0], width, int(f["layers"]), mixtures)
    leaves = [jnp.asarray(f["param/" + jax.tree_util.keystr(k)])
              for k, _ in jax.tree_util.tree_leaves_with_path(template)]
    params = jax.tree.unflatten(jax.tree.structure(template), leaves)
    info = {k[len("info_"):]: f[k].item() for k in f.files if k.startswith("info_")}
    return CellTransformer(params, jnp.asarray(f["shift"]), jnp.asarray(f["scale"])), info
