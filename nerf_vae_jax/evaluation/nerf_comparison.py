"""The per-scene NeRF baseline, on the same views and metrics as NeRF-VAE (``experiments.nerf_baseline``).

  # NeRF trained on K = 1..4 context views of each test scene (what NeRF-VAE sees):
  python -m experiments.nerf_baseline --workdir=DIR [--split=test] [--num_scenes=8] [--steps=1000]
  # NeRF trained on 8..100 views of the dense scenes, scored on their last 10 views:
  python -m experiments.nerf_baseline --workdir=DIR --dense [--views=8,16,32,64,100]

DIR is a NeRF-VAE training run: the NeRF takes its scene-function settings
(width, depth, encodings, samples) from DIR/config.json, without the latent.
Writes DIR/eval/nerf_baseline/<split or dense>/metrics.json (the fields of
experiments.evaluate's, without the ELBO, plus context_psnr: how well each NeRF
fits its own training views) and an image grid, then refreshes every
DIR/eval/<step>/report.html.
"""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np

from nerf_vae_jax import errors, visualize
from nerf_vae_jax.baselines import nerf
from nerf_vae_jax.data import build, source
from nerf_vae_jax.evaluation import view_metrics, protocol, report
from nerf_vae_jax.train import run_dir

DENSE_HELD_OUT = 10  # the last views of each dense scene


def run_baseline(workdir, split="test", num_scenes=8, counts=(1, 2, 3, 4), dense=False, steps=1000, num_rays=512,
                 learning_rate=5e-3, group=16, data_dir=None, seed=0) -> str:
  """Fits and scores the NeRFs; returns the metrics.json path."""
  config = run_dir.load_config(workdir)
  data_dir = data_dir or config.data.data_dir or build.default_data_dir()
  name = "shape_scenes/dense" if dense else config.data.name
  if dense and not build.is_built(name, data_dir):
    print(f"{name} is not in {data_dir}: building it first.", flush=True)
    build.build(name, data_dir)
  src = source.SceneSource(name, "test" if dense else split, data_dir)
  spec = src.spec
  held_out = slice(spec.num_views - DENSE_HELD_OUT, None) if dense else protocol.HELD_OUT
  limit = spec.num_views - DENSE_HELD_OUT if dense else protocol.CONTEXT_CANDIDATES
  for c in counts:
    if not 1 <= c <= limit:
      raise errors.UserError(f"{c} training views: choose between 1 and {limit} for {name}.")
  model = nerf.from_config(config.model, spec.scene_radius)
  scenes = [src[i] for i in range(min(num_scenes, len(src)))]
  problems = [(s, c) for c in counts for s in range(len(scenes))]
  print(f"Fitting {len(problems)} NeRFs ({len(scenes)} scenes of {name} x {len(counts)} view counts), "
        f"{steps} steps each, {group} at a time ...", flush=True)

  per_count = {c: [] for c in counts}
  context_psnr = {c: [] for c in counts}
  first_preds = {}
  t0 = time.time()
  for start, chunk, padded in protocol.padded_chunks(problems, group):
    stack = lambda key, sl=slice(None): np.stack([scenes[s][key][sl] for s, _ in padded])
    train_views = slice(0, max(c for _, c in padded))
    params, fit_psnr = nerf.fit(model, stack("images", train_views), stack("intrinsics", train_views),
                                stack("cam_to_world", train_views), np.array([c for _, c in padded], np.int32),
                                jax.random.PRNGKey(seed + start), steps=steps, num_rays=num_rays,
                                learning_rate=learning_rate)
    out = jax.device_get(nerf.render_views(model, params, stack("intrinsics", held_out),
                                           stack("cam_to_world", held_out), spec.height, spec.width,
                                           config.eval.chunk))
    for i, (s, c) in enumerate(chunk):
      per_count[c].append(view_metrics.scene_metrics(out["rgb"][i], out["depth"][i], out["acc"][i], scenes[s], c,
                                                   held_out))
      context_psnr[c].append(float(fit_psnr[i]))
      if s == 0:
        first_preds[c] = {k: out[k][i] for k in ("rgb", "depth")}
    print(f"  {min(start + group, len(problems))}/{len(problems)} NeRFs fitted ({time.time() - t0:.0f} s)",
          flush=True)

  key = "num_views" if dense else "num_context_views"
  results = [{key: c, **view_metrics.summarize(per_count[c]), "context_psnr": float(np.mean(context_psnr[c]))}
             for c in counts]
  out_dir = os.path.join(workdir, "eval", "nerf_baseline", "dense" if dense else split)
  os.makedirs(out_dir, exist_ok=True)
  summary = {"dataset": name, "split": "test" if dense else split, "num_scenes": len(scenes), "steps": steps,
             "num_rays": num_rays, "learning_rate": learning_rate, "results": results}
  path = os.path.join(out_dir, "metrics.json")
  with open(path, "w") as f:
    json.dump(summary, f, indent=2)
  for r in results:
    print(f"  {key}={r[key]}: held-out PSNR {r['psnr']:.2f} dB, SSIM {r['ssim']:.3f} (fits its training views "
          f"to {r['context_psnr']:.2f} dB)", flush=True)
  # First scene: target | NeRF prediction | depth, one row per view count.
  tgt = scenes[0]["images"][held_out][0]
  rows = [[tgt, visualize.to_uint8(first_preds[c]["rgb"][0]), visualize.depth_to_rgb(first_preds[c]["depth"][0])]
          for c in counts]
  visualize.save_png(os.path.join(out_dir, "grid.png"), visualize.grid(rows), scale=2)
  for step_dir in os.listdir(os.path.join(workdir, "eval")):
    if step_dir.isdigit():
      report.write(workdir, int(step_dir))
  print(f"Wrote {path}", flush=True)
  return path
