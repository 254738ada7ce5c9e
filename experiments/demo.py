"""`make demo`: the whole job on the CPU, on the built-in synthetic data.

Builds shape_scenes/tiny (contact sheet), trains the `tiny` config, infers
held-out test scenes from 1..4 context views, renders their other views
(experiments.evaluate), prints the novel-view PSNR beside the mean-colour
baseline, and writes image grids, orbit GIFs and an HTML report.

  python -m experiments.demo --out=out [--steps=N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default="out", help="output folder")
  parser.add_argument("--steps", type=int, default=None, help="training steps (default: the tiny config's)")
  parser.add_argument("--num_scenes", type=int, default=64, help="test scenes to evaluate")
  args = parser.parse_args(argv)
  start = time.time()
  # On the CPU, XLA runs one device's program with limited parallelism; the
  # same step split over 8 host "devices" (data parallel, 1 scene each) is
  # 1.6x faster on 2 cores (BENCHMARKS.md). Set before JAX starts.
  os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

  from experiments.configs import shape_scenes
  from nerf_vae_jax import trainer, visualize
  from nerf_vae_jax.data import build, source

  data_dir = os.path.abspath(os.path.join(args.out, "tensorflow_datasets"))  # config.json works from anywhere
  build.build("shape_scenes/tiny", data_dir)
  test = source.SceneSource("shape_scenes/tiny", "test", data_dir)
  sheet_path = os.path.join(args.out, "shape_scenes_tiny_contact_sheet.png")
  visualize.save_png(sheet_path, visualize.contact_sheet([test[i] for i in range(6)]), scale=3)

  config = shape_scenes.get_config("tiny")
  config.data.data_dir = data_dir
  if args.steps:
    config.train.num_steps = args.steps
  workdir = os.path.join(args.out, "train_tiny")
  print(f"\nTraining the tiny config for {config.train.num_steps} steps in {workdir} ...", flush=True)
  trainer.train(config, workdir)

  # ---- Novel views of held-out scenes, from 1..4 context views (experiments.evaluate).
  from experiments import evaluate
  from nerf_vae_jax import evaluation
  eval_dir = evaluate.evaluate(workdir, split="test", num_scenes=args.num_scenes)
  with open(os.path.join(eval_dir, "metrics.json")) as f:
    metrics = json.load(f)
  step = metrics["step"]
  report = os.path.join(evaluate.step_dir(workdir, step), "report.html")

  print(f"\nNovel views of {args.num_scenes} held-out test scenes (step {step}):")
  print("                 mean squared error          PSNR of that mean       mean of per-scene PSNR")
  print("  context views  NeRF-VAE  mean colour       NeRF-VAE  mean colour   NeRF-VAE  mean colour")
  for r in metrics["results"]:
    print(f"  {r['num_context_views']:13d}  {r['mse']:8.5f}  {r['baseline_mse']:11.5f}      "
          f"{evaluation.psnr(r['mse']):5.2f} dB  {evaluation.psnr(r['baseline_mse']):8.2f} dB   "
          f"{r['psnr']:5.2f} dB  {r['baseline_psnr']:8.2f} dB")
  print("  (mean colour: every pixel painted with the mean colour of the context views)")
  print(f"\nOutputs ({time.time() - start:.0f} s):")
  for p in (sheet_path, os.path.join(eval_dir, "grid_k3.png"), os.path.join(eval_dir, "orbit_0.gif"), report,
            workdir):
    print(f"  {os.path.abspath(p)}")
  print("  (grid rows: context views | target | prediction | predicted depth | error)")
  print(f"More: python -m experiments.generate --workdir={workdir}  (samples from the prior)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
