"""`make demo`: the whole job on the CPU, on the built-in synthetic data.

Builds shape_scenes/32px (contact sheet), trains the `tiny` config, infers
held-out test scenes from 1 and from 4 context views, renders their other views
(experiments.evaluate), prints the novel-view PSNR beside the mean-colour
baseline, samples new scenes from the prior and scores them against real
views (experiments.generate), and writes image grids, orbit GIFs and an HTML
report. (The second-stage prior, experiments.fit_prior, is no longer part of
it: with the factor prior the model's own prior samples as well or better,
RESULTS.md, "A low-rank Gaussian as the model's own prior".)

  python -m experiments.demo --out=out [--steps=N] [--data_dir=DIR]
"""

from __future__ import annotations

import json
import os
import signal
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
  from nerf_vae_jax import image_metrics
  from nerf_vae_jax.evaluation import run, sample_metrics, samples, uncertainty
  from nerf_vae_jax.train import loop

  config = shape_scenes.get_config("tiny")
  data_dir = os.path.abspath(data_dir or os.path.join(out, "tensorflow_datasets"))  # config.json works anywhere
  config.data.name, config.data.data_dir = dataset, data_dir
  build.build(config.data.name, data_dir)
  os.makedirs(out, exist_ok=True)  # the dataset may live elsewhere (--data_dir)
  test = source.SceneSource(config.data.name, "test", data_dir)
  sheet_path = os.path.join(out, "contact_sheet.png")
  visualize.save_png(sheet_path, visualize.contact_sheet([test[i] for i in range(6)]), scale=3)

  if steps:  # tiny's KL warm-up spans the run (beta_warmup_steps None), so it follows
    config.train.num_steps = steps
  workdir = os.path.join(out, "train_tiny")
  print(f"\nTraining the tiny config for {config.train.num_steps} steps in {workdir} ...", flush=True)
  stopped = loop.train(config, workdir)["stopped"]
  if stopped not in (None, "time budget"):  # a SIGTERM: stop the demo too (the run resumes from its checkpoint)
    name = signal.Signals(stopped).name if isinstance(stopped, int) else stopped
    print(f"\nThe demo was stopped ({name}) during training; its checkpoint is in {workdir}. Run the same "
          f"command again to resume it and finish the demo.", flush=True)
    raise SystemExit(128 + int(stopped) if isinstance(stopped, int) else 1)

  # ---- Novel views of held-out scenes, from 1 and 4 context views (experiments.evaluate; it does 2 and 3 too).
  eval_dir = run.evaluate(workdir, split="test", num_scenes=num_scenes, context=(1, 4))
  with open(os.path.join(eval_dir, "metrics.json")) as f:
    metrics = json.load(f)
  step = metrics["step"]
  report = os.path.join(run.step_dir(workdir, step), "report.html")

  print(f"\nNovel views of {num_scenes} held-out test scenes (step {step}):")
  print("                 mean squared error          PSNR of that mean       mean of per-scene PSNR    objects")
  print("  context views  NeRF-VAE  mean colour       NeRF-VAE  mean colour   NeRF-VAE  mean colour   mask IoU  "
        "object MSE  hazy    fog")
  for r in metrics["results"]:
    print(f"  {r['num_context_views']:13d}  {r['mse']:8.5f}  {r['baseline_mse']:11.5f}      "
          f"{image_metrics.psnr(r['mse']):5.2f} dB  {image_metrics.psnr(r['baseline_mse']):8.2f} dB   "
          f"{r['psnr']:5.2f} dB  {r['baseline_psnr']:8.2f} dB   {r['mask_iou']:8.3f}  {r['object_mse']:10.4f}  "
          f"{r['hazy']:5.1%}  {r['fog']:5.1%}")
  print("  (mean colour: every pixel painted with the mean colour of the context views; mask IoU: rendered "
        "opacity > 0.5 against the objects' true masks; object MSE: on the true object pixels; hazy: pixels of "
        "rendered opacity between 0.1 and 0.9, none in the data; fog: the hazy pixels with no opaque pixel "
        "next to them, i.e. not on a silhouette)")
  k4 = metrics["results"][-1]
  print(f"  Held-out bounds from {k4['num_context_views']} views: IWAE {k4['iwae_per_pixel']:.3f}, ELBO "
        f"{k4['elbo_per_pixel']:.3f} nats per pixel (higher is better).")

  # ---- New scenes from the prior, scored against real views (experiments.generate).
  print(flush=True)
  gen_dir = samples.generate(workdir, num_samples=8, num_frames=12, num_pairs=2, num_steps=6,
                             metric_scenes=num_scenes, far_side_scenes=16)
  with open(os.path.join(gen_dir, "metrics.json")) as f:
    gen = json.load(f)
  print(f"\nSamples from the prior ({gen['samples']['prior']}), {gen['samples']['num_scenes']} scenes x "
        f"{gen['samples']['views_per_scene']} views against as many real test views:")
  print(f"  {sample_metrics.summary_line(gen['samples'])}")
  fs = gen["far_side"]
  hidden = ("spread " if fs["pixels_hidden"] else "") + uncertainty.hidden_summary(fs)  # a phrase either way
  print(f"  From 1 view, {fs['num_samples']} posterior samples differ {fs['diversity_ratio']:.2f}x as much where "
        f"the view does not see as where it does; {hidden}.")
  print(f"\nOutputs ({time.time() - start:.0f} s):")
  for p in (sheet_path, os.path.join(eval_dir, "grid_k4.png"), os.path.join(eval_dir, "orbit_0.gif"),
            os.path.join(gen_dir, "samples_vs_data.png"), os.path.join(gen_dir, "far_side.png"),
            report, workdir):
    print(f"  {os.path.abspath(p)}")
  print("  (grid rows: context views | target | prediction | predicted depth | error; samples_vs_data rows: real "
        "views | the model's prior samples | independent N(0, I) cells)")


def main(argv):
  del argv
  from experiments import common
  sys.exit(common.run(demo, out=FLAGS.out, steps=FLAGS.steps, num_scenes=FLAGS.num_scenes, data_dir=FLAGS.data_dir,
                      dataset=FLAGS.dataset))


if __name__ == "__main__":
  # On the CPU, XLA runs one device's program with limited parallelism; the
  # same step split over one host "device" per core (data parallel) is
  # faster: on 2 cores, 2 devices step in 320 ms, 8 in 358 ms and 1 in about
  # 1.5x that (BENCHMARKS.md). Set before JAX starts.
  from experiments import common
  os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count={common.host_devices()}")
  app.run(main)
