"""Evaluates a training run's checkpoint on held-out scenes (``experiments.evaluate``).

  python -m experiments.evaluate --workdir=DIR [--step=N] [--split=test|test_ood] [--num_scenes=M]
      [--refine_steps=20]

The config comes from DIR/config.json. For K = 1..4 context views it renders
every held-out view (views 4.. of each scene) and writes, in
DIR/eval/<step>/<split>/ (<split>_<M>scenes_k<Ks>/ for a subset of scenes or
of context counts, so that a quick look never replaces the full evaluation):

  metrics.json      {"step", "split", "num_scenes", "results": [per K: mse, psnr, ssim,
                     depth_mae, mask_iou, elbo_per_pixel, iwae_per_pixel, baseline_psnr]}
                    (+ "refined_results" with --refine_steps)
  grid_k<K>.png     rows of scenes: context views | target | prediction | depth | error
  orbit_<i>.gif     the first scenes, inferred from 4 views, seen from an orbit

and DIR/eval/<step>/report.html (all splits, the NeRF baseline and samples
found there). See ``protocol`` for the protocol, ``metrics`` for the metrics.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

from nerf_vae_jax import errors, visualize
from nerf_vae_jax.data import source
from nerf_vae_jax.evaluation import view_metrics
from nerf_vae_jax.evaluation import orbits, protocol, report
from nerf_vae_jax.train import run_dir


def step_dir(workdir: str, step: int) -> str:
  return os.path.join(workdir, "eval", str(step))


def eval_folder(split: str, num_scenes: int, default_scenes: int, context) -> str:
  """The folder name of one evaluation: the split, plus what it left out (fewer scenes, fewer K)."""
  name = split if num_scenes == default_scenes else f"{split}_{num_scenes}scenes"
  if tuple(context) != tuple(range(1, protocol.CONTEXT_CANDIDATES + 1)):
    name += "_k" + "".join(str(k) for k in context)
  return name


def image_grid(scenes, preds, num_context: int, num_images: int):
  """uint8 grid: per scene, context views (blank where unused) | target | prediction | depth (where the
  rendered opacity > 0.5) | error."""
  rows = []
  for scene, rgb, depth, acc in zip(scenes[:num_images], preds["rgb"], preds["depth"], preds["acc"]):
    ctx = [im if i < num_context else visualize.blank_like(im)
           for i, im in enumerate(scene["images"][:protocol.CONTEXT_CANDIDATES])]
    target, pred = scene["images"][protocol.CONTEXT_CANDIDATES], visualize.to_uint8(rgb[0])
    far = float(scene["depths"][protocol.CONTEXT_CANDIDATES].max()) or None if "depths" in scene else None
    rows.append(ctx + [target, pred, visualize.depth_to_rgb(depth[0] * (acc[0] > 0.5), far), visualize.error_to_rgb(pred, target)])
  return visualize.grid(rows)


def evaluate(workdir, step=None, split="test", num_scenes=None, context=(1, 2, 3, 4), refine_steps=0,
             num_images=4, data_dir=None) -> str:
  """Runs the evaluation; returns the folder it wrote."""
  for k in context:
    if not 1 <= k <= protocol.CONTEXT_CANDIDATES:
      raise errors.UserError(f"--context={k}: context views must be between 1 and {protocol.CONTEXT_CANDIDATES}.")
  config, model, spec, params, step = run_dir.restore_params(workdir, step)
  src = source.SceneSource(config.data.name, split, data_dir or config.data.data_dir)
  if spec.num_views <= protocol.CONTEXT_CANDIDATES:
    raise errors.UserError(f"{src.name} has {spec.num_views} views per scene; evaluation needs more than "
                     f"{protocol.CONTEXT_CANDIDATES} (the first {protocol.CONTEXT_CANDIDATES} are the context candidates).")
  default_scenes = min(config.eval.num_scenes, len(src))
  num_scenes = min(num_scenes or default_scenes, len(src))
  scenes = [src[i] for i in range(num_scenes)]
  out_dir = os.path.join(step_dir(workdir, step), eval_folder(split, num_scenes, default_scenes, context))
  os.makedirs(out_dir, exist_ok=True)
  print(f"Evaluating step {step} of {workdir} on {num_scenes} {split} scenes of {src.name} ...", flush=True)

  base = protocol.Settings(num_samples=config.eval.iwae_samples, likelihood_scale=config.loss.likelihood_scale,
                             chunk=config.eval.chunk)
  runs = [("results", base)]
  if refine_steps:
    runs.append(("refined_results", dataclasses.replace(base, refine_steps=refine_steps)))
  metrics = {"step": step, "split": split, "num_scenes": num_scenes}
  for field, settings in runs:
    metrics[field] = []
    for k in context:
      t0 = time.time()
      per_scene, preds = protocol.evaluate(model, params, scenes, k, settings, seed=config.seed)
      row = {"num_context_views": k, **view_metrics.summarize(per_scene)}
      metrics[field].append(row)
      label = f"K={k}" + (f", refined {refine_steps} steps" if settings.refine_steps else "")
      # Datasets without masks or depths (converted ones) have no object, IoU or depth metrics.
      extra = "".join(f"{name} {row[k]:{fmt}}, " for k, name, fmt in
                      (("depth_mae", "depth MAE", ".3f"), ("mask_iou", "mask IoU", ".3f"),
                       ("object_mse", "object MSE", ".4f"), ("background_mse", "background MSE", ".4f"),
                       ("hazy", "hazy", ".1%"), ("fog", "fog", ".1%")) if k in row)
      print(f"  {label}: PSNR {row['psnr']:.2f} dB (baseline {row['baseline_psnr']:.2f}), SSIM {row['ssim']:.3f}, "
            f"{extra}ELBO/pixel {row['elbo_per_pixel']:.3f}, IWAE/pixel {row['iwae_per_pixel']:.3f}  "
            f"({time.time() - t0:.0f} s)", flush=True)
      suffix = "_refined" if settings.refine_steps else ""
      visualize.save_png(os.path.join(out_dir, f"grid_k{k}{suffix}.png"),
                         image_grid(scenes, preds, k, num_images), scale=2)
  if refine_steps:
    metrics["refine_steps"] = refine_steps
  with open(os.path.join(out_dir, "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=2)

  k = max(context)
  for i, scene in enumerate(scenes[:num_images]):
    visualize.save_gif(os.path.join(out_dir, f"orbit_{i}.gif"),
                       orbits.render_orbit(model, params, scene, k, spec), scale=2)
  html = report.write(workdir, step)
  print(f"Wrote {out_dir}/metrics.json, image grids, orbit GIFs and {html}", flush=True)
  return out_dir
