"""New scenes from NeRF-VAE's prior, and latent interpolations between test scenes (``experiments.generate``).

  python -m experiments.generate --workdir=DIR [--step=N] [--num_samples=16]

Writes DIR/eval/<step>/generate/:
  prior_samples.png   samples (rows) seen from 4 cameras around them (columns)
  prior_samples.gif   all samples, a tile each, as the camera orbits
  interpolations.png  rows: scene A (truth) | posterior means of A -> B, linearly
                      interpolated | scene B (truth); A and B inferred from 4 views
and refreshes DIR/eval/<step>/report.html.
"""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from nerf_vae_jax import batch as batch_lib
from nerf_vae_jax import errors, visualize
from nerf_vae_jax.data import source
from nerf_vae_jax.evaluation import protocol, report
from nerf_vae_jax.models import nerf_vae
from nerf_vae_jax.train import workdir as workdir_lib


def generate(workdir, step=None, num_samples=16, num_frames=24, num_pairs=3, num_steps=8, seed=0,
             data_dir=None) -> str:
  """Writes the samples and interpolations; returns their folder."""
  if num_samples < 1 or num_frames < 4 or num_steps < 2:
    raise errors.UserError("Need --num_samples >= 1, --num_frames >= 4 and --num_steps >= 2.")
  config, model, spec, params, step = workdir_lib.restore_params(workdir, step)
  out_dir = os.path.join(workdir, "eval", str(step), "generate")
  os.makedirs(out_dir, exist_ok=True)
  render = jax.jit(lambda z, intr, c2w: nerf_vae.render_views(model, params, z, intr, c2w, spec.height, spec.width,
                                                              config.eval.chunk))

  # ---- Prior samples from an orbit.
  print(f"Rendering {num_samples} prior samples x {num_frames} frames (step {step}) ...", flush=True)
  intr, c2w = protocol.orbit_cameras(spec, num_frames)
  z = nerf_vae.sample_prior(jax.random.PRNGKey(seed), model, num_samples)
  tile = lambda x: jnp.broadcast_to(x, (num_samples,) + x.shape)
  frames = visualize.to_uint8(render(z, tile(jnp.asarray(intr)), tile(jnp.asarray(c2w)))["rgb"])  # [S, F, H, W, 3]
  cols = [i * num_frames // 4 for i in range(4)]
  visualize.save_png(os.path.join(out_dir, "prior_samples.png"),
                     visualize.grid([[f[c] for c in cols] for f in frames]), scale=2)
  per_row = math.ceil(math.sqrt(num_samples))
  tiles = lambda t: [list(frames[r:r + per_row, t]) for r in range(0, num_samples, per_row)]
  visualize.save_gif(os.path.join(out_dir, "prior_samples.gif"),
                     [visualize.grid(tiles(t)) for t in range(num_frames)], scale=2)

  # ---- Interpolations between inferred test scenes, seen from scene A's first held-out camera.
  src = source.SceneSource(config.data.name, "test", data_dir or config.data.data_dir)
  n = min(2 * num_pairs, len(src)) // 2 * 2
  scenes = [src[i] for i in range(n)]
  context = batch_lib.context(protocol.context_batch(scenes, protocol.CONTEXT_CANDIDATES))
  mean, _ = jax.jit(lambda c: nerf_vae.infer(model, params, c))(context)
  t = jnp.linspace(0.0, 1.0, num_steps).reshape((1, num_steps) + (1,) * len(model.latent_shape))
  a, b = mean[0::2], mean[1::2]  # [P, ...]
  lat = ((1 - t) * a[:, None] + t * b[:, None]).reshape((-1,) + model.latent_shape)  # [P * steps, ...]
  cam = lambda key: jnp.repeat(jnp.asarray(np.stack([s[key][protocol.CONTEXT_CANDIDATES] for s in scenes[0::2]])),
                               num_steps, axis=0)[:, None]
  rgb = visualize.to_uint8(render(lat, cam("intrinsics"), cam("cam_to_world"))["rgb"][:, 0])
  rgb = rgb.reshape((n // 2, num_steps) + rgb.shape[1:])
  rows = [[scenes[2 * p]["images"][protocol.CONTEXT_CANDIDATES], *rgb[p], scenes[2 * p + 1]["images"][protocol.CONTEXT_CANDIDATES]]
          for p in range(n // 2)]
  visualize.save_png(os.path.join(out_dir, "interpolations.png"), visualize.grid(rows), scale=2)
  html = report.write(workdir, step)
  print(f"Wrote {out_dir}/prior_samples.png, prior_samples.gif, interpolations.png and {html}", flush=True)
  return out_dir
