"""A small probe network on shape_scenes' labelled views, whose features the Fréchet distance uses.

FID's Inception features know nothing of 32x32 renders of spheres and cubes,
so the sample metrics use a network that does: a small CNN trained on single
views of the dataset's training split to say what a view shows, from the
labels ``shape_scenes`` stores with every scene:

  count       visible objects in the view (0 .. max_objects; from the masks)
  shapes      which of the 4 shapes are visible (multi-label)
  hues        which of 6 hue bins the visible objects' colours fall in (multi-label)
  layout      which cells of a 4x4 partition of the image hold object pixels (multi-label)
  background  the backdrop's colour (regression)

Its 64 features (the last hidden layer, before its ReLU) are what
``sample_quality.frechet_distance`` compares. The probe is trained once per
dataset and cached under DATA_DIR/probes/<dataset>-<key>/, where the key is
a hash of the dataset's spec and the probe's settings: a changed dataset (or
probe) gets a new folder, never a stale probe. ``experiments.probe`` trains
it and prints its held-out accuracy (the test split).

Published probes: ``experiments.probe --publish`` copies a trained probe into
the package (nerf_vae_jax/evaluation/probes/<dataset>-<key>.msgpack, its
scores beside it as .json), and ``load_or_train`` reads it before any cache.
So every machine measures a dataset's Fréchet distances with the same
network, as FID does with one Inception, and a fresh clone skips the
training (32 s of `make demo`). The key still decides: a published probe of
another spec or version is never read.
"""

from __future__ import annotations

import colorsys
import dataclasses
import functools
import hashlib
import json
import os
import time

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from nerf_vae_jax import errors
from nerf_vae_jax.data import build, source
from nerf_vae_jax.data.shape_scenes import ShapeScenes
from nerf_vae_jax.scenes import specs
from nerf_vae_jax.train import checkpoints

VERSION = 1  # bump when the network, labels or training change: old caches are then ignored
PUBLISHED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probes")
NUM_HUES = 6
LAYOUT = 4  # layout cells per side


@dataclasses.dataclass(frozen=True)
class Settings:
  train_scenes: int = 8000  # scenes of the training split (all their views) the probe learns from
  epochs: float = 10.0  # passes over those views (5,000 steps on shape_scenes/32px, 320 on tiny)
  batch_size: int = 128
  learning_rate: float = 2e-3
  seed: int = 0


def view_labels(scene: dict, max_objects: int) -> dict:
  """The labels of every view of a decoded scene (``source.decode``), arrays over its V views."""
  masks = scene["masks"]  # [V, H, W], 0 background, k + 1 object k
  v, h, w = masks.shape
  objects = scene["objects"]
  present = np.stack([np.isin(np.arange(1, max_objects + 1), np.unique(m)) for m in masks])  # [V, max_objects]
  present[:, len(objects["shape"]):] = False
  shapes = np.zeros((v, len(specs.SHAPES)), np.float32)
  hues = np.zeros((v, NUM_HUES), np.float32)
  for k, (shape, colour) in enumerate(zip(objects["shape"], objects["color"])):
    hue = int(colorsys.rgb_to_hsv(*colour)[0] * NUM_HUES) % NUM_HUES
    shapes[present[:, k], shape] = 1.0
    hues[present[:, k], hue] = 1.0
  cells = (masks > 0).reshape(v, LAYOUT, h // LAYOUT, LAYOUT, w // LAYOUT).any(axis=(2, 4))
  return {"count": present.sum(1).astype(np.int32), "shapes": shapes, "hues": hues,
          "layout": cells.reshape(v, -1).astype(np.float32),
          "background": np.broadcast_to(scene["background"], (v, 3)).astype(np.float32)}


def dataset(src: source.SceneSource, num_scenes: int) -> tuple[np.ndarray, dict]:
  """(images uint8 [N, H, W, 3], labels: dict of [N, ...]) of every view of the first ``num_scenes`` scenes."""
  scenes = [src[i] for i in range(min(num_scenes, len(src)))]
  labels = [view_labels(s, src.spec.max_objects) for s in scenes]
  return (np.concatenate([s["images"] for s in scenes]),
          {k: np.concatenate([l[k] for l in labels]) for k in labels[0]})


class Probe(nn.Module):
  """uint8 views [N, H, W, 3] -> (features [N, 64], logits: dict of the label heads)."""
  num_counts: int = 5

  @nn.compact
  def __call__(self, images):
    x = images.astype(jnp.float32) / 127.5 - 1.0
    width = 16
    # Non-overlapping 2x2 patches, each mapped by a dense layer, down to 4x4: only matmuls, so the
    # probe trains in about a minute on a CPU (3x3 convolutions took several times as long).
    while x.shape[1] > 4:
      n, h, w, c = x.shape
      x = x.reshape(n, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, h // 2, w // 2, 4 * c)
      x = nn.relu(nn.Dense(width)(x))
      width = min(2 * width, 64)
    x = nn.relu(nn.Dense(128)(x.reshape(x.shape[0], -1)))
    feats = nn.Dense(64)(x)
    h = nn.relu(feats)
    heads = {"count": self.num_counts, "shapes": len(specs.SHAPES), "hues": NUM_HUES, "layout": LAYOUT ** 2,
             "background": 3}
    return feats, {k: nn.Dense(n, name=f"head_{k}")(h) for k, n in heads.items()}


def _loss(logits: dict, labels: dict):
  bce = lambda k: jnp.mean(optax.sigmoid_binary_cross_entropy(logits[k], labels[k]))
  count = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits["count"], labels["count"]))
  background = jnp.mean(jnp.square(jax.nn.sigmoid(logits["background"]) - labels["background"]))
  return count + bce("shapes") + bce("hues") + bce("layout") + 10.0 * background


def accuracy(model: Probe, params, images: np.ndarray, labels: dict) -> dict:
  """Held-out scores: count accuracy, per-label accuracy of shapes, hues and layout, background RMSE."""
  _, logits = _apply(model, params, images)
  out = {"count_accuracy": float(np.mean(np.argmax(logits["count"], -1) == labels["count"]))}
  for k in ("shapes", "hues", "layout"):
    out[f"{k}_accuracy"] = float(np.mean((logits[k] > 0) == (labels[k] > 0.5)))
  out["background_rmse"] = float(np.sqrt(np.mean((jax.nn.sigmoid(logits["background"]) - labels["background"]) ** 2)))
  return out


@functools.partial(jax.jit, static_argnums=0)
def _forward(model, params, images):
  return model.apply(params, images)


def _apply(model: Probe, params, images: np.ndarray, batch: int = 512):
  """(features, logits) of many views, as numpy, ``batch`` at a time (padded to one compiled shape)."""
  feats, logits = [], []
  for i in range(0, len(images), batch):
    chunk = images[i:i + batch]
    padded = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), 0)]) if len(chunk) < batch else chunk
    f, l = jax.device_get(_forward(model, params, padded))
    feats.append(f[:len(chunk)])
    logits.append(jax.tree.map(lambda x: x[:len(chunk)], l))
  return np.concatenate(feats), {k: np.concatenate([l[k] for l in logits]) for k in logits[0]}


def features(probe: tuple, images: np.ndarray) -> np.ndarray:
  """The probe's features [N, 64] of views uint8 [N, H, W, 3]; ``probe`` from ``load_or_train``."""
  model, params, _ = probe
  return _apply(model, params, np.asarray(images))[0]


def cache_key(spec: specs.SceneSpec, settings: Settings) -> str:
  """A hash of everything the probe depends on: the dataset's spec and builder version (a renderer change
  keeps the spec), the probe's settings and version."""
  dataset_version = str(ShapeScenes.VERSION) if spec.dataset == "shape_scenes" else None
  blob = json.dumps({"spec": dataclasses.asdict(spec), "settings": dataclasses.asdict(settings),
                     "version": VERSION, "dataset_version": dataset_version}, sort_keys=True, default=str)
  return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _stem(spec: specs.SceneSpec, settings: Settings) -> str:
  return f"{spec.full_name.replace('/', '_')}-{cache_key(spec, settings)}"


def cache_dir(name: str, data_dir: str, settings: Settings) -> str:
  return os.path.join(data_dir, "probes", _stem(build.spec_of(name, data_dir), settings))


def published_path(spec: specs.SceneSpec, settings: Settings = Settings()) -> str:
  """Where the published probe of ``spec`` lives (without its suffix: .msgpack the parameters, .json the info)."""
  return os.path.join(PUBLISHED, _stem(spec, settings))


def _read_published(path: str, abstract) -> tuple:
  """(params, info) of a published probe, its parameters checked against the network's shapes."""
  with open(path + ".json") as f:
    info = json.load(f)
  with open(path + ".msgpack", "rb") as f:
    params = flax.serialization.msgpack_restore(f.read())
  shapes = lambda tree: jax.tree.map(lambda x: tuple(x.shape), tree)
  if shapes(params) != shapes(abstract):
    raise errors.UserError(f"The published probe {path}.msgpack does not fit the probe network (its shapes "
                           f"differ): republish it with python -m experiments.probe --publish, or delete it "
                           f"to train the probe locally.")
  return params, dict(info, folder=path + ".msgpack")


def train(src: source.SceneSource, settings: Settings, log=print):
  """Trains a probe on the training split ``src``; returns (model, params)."""
  images, labels = dataset(src, settings.train_scenes)
  model = Probe(num_counts=src.spec.max_objects + 1)
  key = jax.random.PRNGKey(settings.seed)
  params = model.init(key, images[:1])
  steps = max(1, round(settings.epochs * len(images) / settings.batch_size))
  tx = optax.adam(optax.cosine_decay_schedule(settings.learning_rate, steps))
  opt = tx.init(params)

  @jax.jit
  def step(params, opt, x, y):
    loss, grads = jax.value_and_grad(lambda p: _loss(model.apply(p, x)[1], y))(params)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, loss

  rng = np.random.default_rng(settings.seed)
  t0 = time.time()
  for i in range(steps):
    idx = rng.integers(0, len(images), settings.batch_size)
    params, opt, loss = step(params, opt, images[idx], {k: v[idx] for k, v in labels.items()})
    if (i + 1) % 500 == 0 or i + 1 == steps:
      log(f"  probe step {i + 1}/{steps}  loss {float(loss):.4f}  ({time.time() - t0:.0f} s)")
  return model, params


def load_or_train(name: str, data_dir: str | None = None, settings: Settings = Settings(), log=print):
  """The probe of a dataset: (model, params, info), from the cache, or trained and cached first.

  ``info`` holds the cache folder and the held-out scores on the test split (``accuracy``).
  """
  data_dir = data_dir or build.default_data_dir()
  spec = build.spec_of(name, data_dir)
  if spec.dataset != "shape_scenes":
    raise errors.UserError(f"The sample metrics' probe learns from shape_scenes' labels (object counts, shapes, "
                           f"colours); {spec.full_name} has none. Use a shape_scenes dataset.")
  folder = cache_dir(name, data_dir, settings)
  model = Probe(num_counts=spec.max_objects + 1)
  abstract = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1, spec.height, spec.width, 3),
                                                                                   jnp.uint8)))
  published = published_path(spec, settings)
  if os.path.exists(published + ".json"):
    return (model, *_read_published(published, abstract))
  info_path = os.path.join(folder, "probe.json")
  if os.path.exists(info_path):
    with open(info_path) as f:
      info = json.load(f)
    return model, checkpoints.restore_tree(os.path.join(folder, "params"), abstract), info
  log(f"Training the probe of {spec.full_name} (once; cached in {folder}) ...")
  model, params = train(source.SceneSource(name, "train", data_dir), settings, log)
  images, labels = dataset(source.SceneSource(name, "test", data_dir), 10 ** 9)
  info = {"dataset": spec.full_name, "key": cache_key(spec, settings), "folder": folder,
          "settings": dataclasses.asdict(settings), "test_views": len(images),
          "held_out": accuracy(model, params, images, labels)}
  checkpoints.save_tree(os.path.join(folder, "params"), params)
  with open(info_path, "w") as f:  # written last: its presence marks a complete cache
    json.dump(info, f, indent=2)
  return model, params, info


def publish(name: str, data_dir: str | None = None, settings: Settings = Settings(), log=print) -> str:
  """Copies the probe of a dataset (cached, or trained first) into the package; returns its path.

  A probe already published under the same key is kept (the key names the spec, version and settings)."""
  data_dir = data_dir or build.default_data_dir()
  spec = build.spec_of(name, data_dir)
  path = published_path(spec, settings)
  if os.path.exists(path + ".json"):
    log(f"Already published, kept (same spec, version and settings): {path}.msgpack")
    return path + ".msgpack"
  _, params, info = load_or_train(name, data_dir, settings, log)
  os.makedirs(PUBLISHED, exist_ok=True)
  with open(path + ".msgpack", "wb") as f:
    f.write(flax.serialization.msgpack_serialize(jax.tree.map(np.asarray, jax.device_get(params))))
  with open(path + ".json", "w") as f:  # written last, as the cache's probe.json
    json.dump({k: v for k, v in info.items() if k != "folder"}, f, indent=2)
  log(f"Published: {path}.msgpack (commit it with its .json)")
  return path + ".msgpack"


def describe(info: dict) -> str:
  """One line of the probe's held-out scores."""
  h = info["held_out"]
  return (f"probe ({info['dataset']}, {info['test_views']} test views): objects counted right "
          f"{h['count_accuracy']:.1%}, shapes {h['shapes_accuracy']:.1%}, hues {h['hues_accuracy']:.1%}, "
          f"layout {h['layout_accuracy']:.1%} (per label), backdrop RMSE {h['background_rmse']:.3f}")
