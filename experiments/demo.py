"""`make demo`: the whole job on the CPU, on the built-in synthetic data.

Builds shape_scenes/tiny (contact sheet), trains the `tiny` config, infers
held-out test scenes from 3 context views, renders their other views, prints
the novel-view PSNR beside the mean-colour baseline, and writes a PNG grid and
an orbit GIF.

  python -m experiments.demo --out=out [--steps=N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default="out", help="output folder")
  parser.add_argument("--steps", type=int, default=None, help="training steps (default: the tiny config's)")
  parser.add_argument("--num_scenes", type=int, default=16, help="test scenes to evaluate")
  args = parser.parse_args(argv)
  start = time.time()

  import numpy as np
  from PIL import Image

  from experiments.configs import shape_scenes
  from nerf_vae_jax import evaluation, trainer, visualize
  from nerf_vae_jax.data import build, source

  data_dir = os.path.join(args.out, "tensorflow_datasets")
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

  # ---- Novel views of held-out scenes.
  import jax
  from nerf_vae_jax import checkpointing, sharding, training
  model, spec = trainer.make_model(config)
  mngr = checkpointing.manager(workdir)
  abstract = jax.eval_shape(lambda k: training.init_state(model, training.make_optimizer(config.train),
                                                          training.dummy_batch(spec, config.data), k),
                            jax.random.PRNGKey(0))
  state, _, step = checkpointing.restore(mngr, checkpointing.abstract_like(abstract, sharding.replicated(
      sharding.make_mesh())), with_data=False)
  params = state["params"]
  k = 3
  results = [evaluation.novel_views(model, params, test[i], k) for i in range(args.num_scenes)]
  psnr = evaluation.psnr_np(np.mean([r["mse"] for r in results]))
  base = evaluation.psnr_np(np.mean([r["baseline_mse"] for r in results]))

  rows = []
  for r in results[:4]:
    rows.append(list(r["context"]) + [r["target"][0], r["prediction"][0], visualize.depth_to_rgb(r["depth"][0])])
  grid_path = os.path.join(args.out, "novel_views.png")
  visualize.save_png(grid_path, visualize.grid(rows), scale=4)
  frames = evaluation.render_orbit(model, params, test[0], k, spec)
  gif_path = os.path.join(args.out, "orbit.gif")
  big = [Image.fromarray(f).resize((128, 128), Image.NEAREST) for f in frames]
  big[0].save(gif_path, save_all=True, append_images=big[1:], duration=80, loop=0)

  print(f"\nNovel views of {args.num_scenes} held-out test scenes from {k} context views (step {step}):")
  print(f"  NeRF-VAE PSNR             {psnr:6.2f} dB")
  print(f"  mean-colour baseline PSNR {base:6.2f} dB")
  print(f"\nOutputs ({time.time() - start:.0f} s):")
  for p in (sheet_path, grid_path, gif_path, workdir):
    print(f"  {os.path.abspath(p)}")
  print("  (grid rows: 3 context views | target | prediction | predicted depth)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
