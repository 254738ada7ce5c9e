"""New scenes from NeRF-VAE's prior, how good they are, what one view leaves open, and latent
interpolations between test scenes (``experiments.generate``).

  python -m experiments.generate --workdir=DIR [--step=N] [--num_samples=16] [--metric_scenes=128]
      [--prior=fitted|transformer]   (a second-stage prior, after experiments.fit_prior: generate_<prior>/)

Writes DIR/eval/<step>/generate/:
  metrics.json        sample quality (``sample_metrics``: Fréchet distances in the probe's features with
                      their reference points, object statistics, the probe's held-out scores) and the
                      far-side spread from 1 view (``uncertainty``)
  samples_vs_data.png rows: real test views | prior samples | independent N(0, I) cells, from the same cameras
  prior_samples.png   samples (rows) seen from 4 cameras around them (columns)
  prior_samples.gif   all samples, a tile each, as the camera orbits
  far_side.png        per scene, from its first view only: context | true far view | posterior mean |
                      4 posterior samples | spread across samples | view 0 sees it (green), not (red),
                      or not even the object (yellow)
  interpolations.png  rows: scene A (truth) | posterior latents of A -> B, linearly
                      interpolated | scene B (truth); A and B inferred from 4 views
and refreshes DIR/eval/<step>/report.html.
"""

from __future__ import annotations

import json
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from nerf_vae_jax import batching
from nerf_vae_jax import errors, visualize
from nerf_vae_jax.data import source
from nerf_vae_jax.evaluation import probe_net
from nerf_vae_jax.evaluation import orbits, protocol, report, sample_metrics, second_stage, uncertainty
from nerf_vae_jax.models import nerf_vae
from nerf_vae_jax.train import run_dir


# The sample metrics' reference sets of each run and step, kept for the process: a second call for another prior
# (the demo's fitted prior after the model's own) scores against them without rendering them again.
_REFERENCES: dict = {}


def generate(workdir, step=None, num_samples=16, num_frames=24, num_pairs=3, num_steps=8, seed=0,
             data_dir=None, metric_scenes=128, far_side_scenes=32, temperature=1.0, prior="model",
             bound_scenes=64) -> str:
  """Writes the samples, their metrics and the interpolations; returns their folder.

  ``metric_scenes``: scenes per set of the sample metrics (0: no metrics);
  ``far_side_scenes``: test scenes of the far-side spread (0: none);
  ``temperature``: of the prior samples (1: the prior itself; ``nerf_vae.sample_prior``).
  A temperature other than 1 writes to generate_t<T>/, so the prior's own metrics are never replaced.
  ``prior``: "model" (the model's own), or a second-stage prior (``second_stage.KINDS``: "fitted", the
  Gaussian, or "transformer"; fitted by ``experiments.fit_prior``), which writes to generate_<prior>/ and
  also estimates the held-out bounds
  of ``bound_scenes`` test scenes under both priors.
  """
  if prior not in ("model",) + second_stage.KINDS:
    raise errors.UserError(f"--prior={prior!r}; choose model, {' or '.join(second_stage.KINDS)}.")
  if num_samples < 1 or num_frames < 4 or num_steps < 2:
    raise errors.UserError("Need --num_samples >= 1, --num_frames >= 4 and --num_steps >= 2.")
  config, model, spec, params, step = run_dir.restore_params(workdir, step)
  data_dir = data_dir or config.data.data_dir
  draw, metrics = nerf_vae.sample_prior, {"step": step, "workdir": os.path.abspath(workdir), "prior": prior}
  if prior != "model":
    second_stage.check_model(model)
    fitted, metrics["fitted_prior"] = second_stage.load(workdir, step, prior)
    draw = second_stage.sampler(model, fitted)
  out_dir = os.path.join(workdir, "eval", str(step), "generate" + ("" if prior == "model" else f"_{prior}")
                         + ("" if temperature == 1 else f"_t{temperature:g}"))
  os.makedirs(out_dir, exist_ok=True)
  # A few scenes at a time, over every device: memory stays that of one batch, however many samples.
  render = lambda z, intr, c2w: sample_metrics.render_latents(model, params, np.asarray(z), np.asarray(intr),
                                                              np.asarray(c2w), spec.height, spec.width,
                                                              config.eval.chunk)
  src = source.SceneSource(config.data.name, "test", data_dir)

  # ---- Sample quality against real views.
  if metric_scenes:
    t0 = time.time()
    probe = probe_net.load_or_train(config.data.name, data_dir)
    print(probe_net.describe(probe[2]), flush=True)
    print(f"Rendering {min(metric_scenes, len(src) // 2)} prior samples and as many independent-cell latents from "
          f"real cameras (step {step}) ...", flush=True)
    metrics["samples"], renders = sample_metrics.measure(
        model, params, src, probe, num_scenes=metric_scenes, seed=seed, chunk=config.eval.chunk,
        temperature=temperature, sample_prior=draw, prior_name=None if prior == "model" else prior,
        references=_REFERENCES.setdefault((os.path.abspath(workdir), step, data_dir), {}))
    print(f"Samples: {sample_metrics.summary_line(metrics['samples'])}  ({time.time() - t0:.0f} s)", flush=True)
    cols = min(8, len(renders["real"]))
    view = lambda rgb: [visualize.to_uint8(rgb[i, 0]) for i in range(cols)]
    visualize.save_png(os.path.join(out_dir, "samples_vs_data.png"), visualize.grid(
        [[renders["real"][i, 0] for i in range(cols)], view(renders["samples"]["rgb"]),
         view(renders["independent"]["rgb"])]), scale=2)

  # ---- The held-out bounds under the second-stage prior, beside the model's own (the same samples and rays).
  if prior != "model" and bound_scenes:
    t0 = time.time()
    settings = protocol.Settings(num_samples=config.eval.iwae_samples, likelihood_scale=config.loss.likelihood_scale,
                                 chunk=config.eval.chunk)
    b = metrics["bounds"] = second_stage.bounds(model, params, fitted, [src[i] for i in range(min(bound_scenes,
                                                                                                len(src)))], settings)
    print(f"Held-out bounds from 4 views, nats per pixel: IWAE {b['iwae_fitted']:.3f} with the {prior} prior, "
          f"{b['iwae_model']:.3f} with the model's; ELBO {b['elbo_fitted']:.3f} and {b['elbo_model']:.3f}  "
          f"({time.time() - t0:.0f} s)", flush=True)

  # ---- What one view leaves open.
  if far_side_scenes:
    t0 = time.time()
    scenes = [src[i] for i in range(min(far_side_scenes, len(src)))]
    metrics["far_side"], picture = uncertainty.measure(model, params, scenes, seed=seed)
    f = metrics["far_side"]
    print(f"Far side from 1 view ({f['num_scenes']} scenes, {f['num_samples']} posterior samples): spread "
          f"{f['spread_unseen']:.3f} where view 0 does not see, {f['spread_seen']:.3f} where it does "
          f"(ratio {f['diversity_ratio']:.2f}), {uncertainty.hidden_summary(f)}, {f['spread_background']:.3f} on the "
          f"backdrop  ({time.time() - t0:.0f} s)", flush=True)
    visualize.save_png(os.path.join(out_dir, "far_side.png"), picture, scale=2)
  _write_keeping_earlier(os.path.join(out_dir, "metrics.json"), metrics)

  # ---- Prior samples from an orbit.
  print(f"Rendering {num_samples} prior samples x {num_frames} frames (step {step}) ...", flush=True)
  intr, c2w = orbits.orbit_cameras(spec, num_frames)
  z = draw(model, params, jax.random.PRNGKey(seed), num_samples, temperature)
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
  n = min(2 * num_pairs, len(src)) // 2 * 2
  scenes = [src[i] for i in range(n)]
  context = batching.context(protocol.context_batch(scenes, protocol.CONTEXT_CANDIDATES))
  mean = jax.jit(lambda c: nerf_vae.infer(model, params, c).mean)(context)
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
  print(f"Wrote {out_dir}/metrics.json, samples_vs_data.png, far_side.png, prior_samples.png, prior_samples.gif, "
        f"interpolations.png and {html}", flush=True)
  return out_dir


def _write_keeping_earlier(path: str, metrics: dict) -> None:
  """Writes metrics.json, keeping the sections of an earlier one that this call did not measure (a far-side-only
  call, ``--metric_scenes=0``, must not erase the sample metrics). The folder is the step's, prior's and
  temperature's, so what is kept is of the same model; each section says how many scenes it used."""
  if os.path.exists(path):
    with open(path) as f:
      earlier = json.load(f)
    kept = sorted(k for k in earlier if k not in metrics)
    if kept:
      print(f"Kept {', '.join(kept)} of the earlier {path} (not measured this time).", flush=True)
    metrics = {**{k: earlier[k] for k in kept}, **metrics}
  with open(path, "w") as fh:
    json.dump(metrics, fh, indent=2)
