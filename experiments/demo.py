"""`make demo`: the whole job on the CPU, on the built-in synthetic data.

Builds shape_scenes/32px (contact sheet), trains the `tiny` config, infers
held-out test scenes from 1..4 context views, renders their other views
(experiments.evaluate), prints the novel-view PSNR beside the mean-colour
baseline, and writes image grids, orbit GIFs and an HTML report.

  python -m experiments.demo --out=out [--steps=N] [--data_dir=DIR]
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import app, flags

flags.DEFINE_string("out", "out", "Output folder.")
flags.DEFINE_integer("steps", None, "Training steps (default: the tiny config's).")
flags.DEFINE_integer("num_scenes", 64, "Test scenes to evaluate.")
flags.DEFINE_string("data_dir", None, "Where the dataset is built, or found if already built "
                    "(default: OUT/tensorflow_datasets).")
flags.DEFINE_string("dataset", "shape_scenes/32px", "The shape_scenes dataset to train and evaluate on "
                    "(the tiny config's; the tests use shape_scenes/tiny).")
FLAGS = flags.FLAGS


def demo(out: str, steps: int | None, num_scenes: int, data_dir: str | None = None,
         dataset: str = "shape_scenes/32px") -> None:
  start = time.time()
  from experiments.configs import shape_scenes
  from nerf_vae_jax import visualize
  from nerf_vae_jax.data import build, source
  from nerf_vae_jax.evaluation import metrics as metrics_lib
  from nerf_vae_jax.evaluation import run
  from nerf_vae_jax.train import loop

  config = shape_scenes.get_config("tiny")
  data_dir = os.path.abspath(data_dir or os.path.join(out, "tensorflow_datasets"))  # config.json works anywhere
  config.data.name, config.data.data_dir = dataset, data_dir
  build.build(config.data.name, data_dir)
  test = source.SceneSource(config.data.name, "test", data_dir)
  sheet_path = os.path.join(out, "contact_sheet.png")
  visualize.save_png(sheet_path, visualize.contact_sheet([test[i] for i in range(6)]), scale=3)

  if steps:  # tiny's KL warm-up spans the run (beta_warmup_steps None), so it follows
    config.train.num_steps = steps
  workdir = os.path.join(out, "train_tiny")
  print(f"\nTraining the tiny config for {config.train.num_steps} steps in {workdir} ...", flush=True)
  loop.train(config, workdir)

  # ---- Novel views of held-out scenes, from 1..4 context views (experiments.evaluate).
  eval_dir = run.evaluate(workdir, split="test", num_scenes=num_scenes)
  with open(os.path.join(eval_dir, "metrics.json")) as f:
    metrics = json.load(f)
  step = metrics["step"]
  report = os.path.join(run.step_dir(workdir, step), "report.html")

  print(f"\nNovel views of {num_scenes} held-out test scenes (step {step}):")
  print("                 mean squared error          PSNR of that mean       mean of per-scene PSNR    objects")
  print("  context views  NeRF-VAE  mean colour       NeRF-VAE  mean colour   NeRF-VAE  mean colour   mask IoU  "
        "object MSE")
  for r in metrics["results"]:
    print(f"  {r['num_context_views']:13d}  {r['mse']:8.5f}  {r['baseline_mse']:11.5f}      "
          f"{metrics_lib.psnr(r['mse']):5.2f} dB  {metrics_lib.psnr(r['baseline_mse']):8.2f} dB   "
          f"{r['psnr']:5.2f} dB  {r['baseline_psnr']:8.2f} dB   {r['mask_iou']:8.3f}  {r['object_mse']:10.4f}")
  print("  (mean colour: every pixel painted with the mean colour of the context views; mask IoU: rendered "
        "opacity > 0.5 against the objects' true masks; object MSE: on the true object pixels)")
  print(f"\nOutputs ({time.time() - start:.0f} s):")
  for p in (sheet_path, os.path.join(eval_dir, "grid_k3.png"), os.path.join(eval_dir, "orbit_0.gif"), report,
            workdir):
    print(f"  {os.path.abspath(p)}")
  print("  (grid rows: context views | target | prediction | predicted depth | error)")
  print(f"More: python -m experiments.generate --workdir={workdir}  (samples from the prior)")


def main(argv):
  del argv
  from experiments import common
  sys.exit(common.run(demo, FLAGS.out, FLAGS.steps, FLAGS.num_scenes, FLAGS.data_dir, FLAGS.dataset))


if __name__ == "__main__":
  # On the CPU, XLA runs one device's program with limited parallelism; the
  # same step split over 8 host "devices" (data parallel, 1 scene each) is
  # 1.6x faster on 2 cores (BENCHMARKS.md). Set before JAX starts.
  os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
  app.run(main)
