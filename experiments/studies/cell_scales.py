"""The posterior of the cells from one view, by where each cell lies against view 0's true surface: the
views' scale and their share of the cell (1 without model.depth_lift).

A study kept for rerunning RESULTS.md, "How far are samples from scenes?" (8 host devices):
  python -m experiments.studies.cell_scales RUN [NUM_SCENES]
"""
import sys
import numpy as np, jax
from nerf_vae_jax.train import run_dir
from nerf_vae_jax.data import source
from nerf_vae_jax import batching, geometry
from nerf_vae_jax.evaluation import protocol
from nerf_vae_jax.models import nerf_vae, grid
workdir = sys.argv[1]; n = int(sys.argv[2]) if len(sys.argv) > 2 else 64; margin = 0.15
config, model, spec, params, step = run_dir.restore_params(workdir, None)
src = source.SceneSource(config.data.name, "test", config.data.data_dir)
scenes = [src[i] for i in range(n)]
cells = np.asarray(grid.cell_centres(model.grid_size, model.scene_radius))
infer = jax.jit(lambda c: nerf_vae.infer(model, params, c))
cats = {"in front of the surface": [], "at the surface": [], "0.15-0.6 behind the surface": [], "more than 0.6 behind": [], "on a background ray": [],
        "outside the view": []}
for start in range(0, n, 8):
  chunk = scenes[start:start + 8]
  q = jax.device_get(infer(batching.context(protocol.context_batch(chunk, 1))))
  for i, s in enumerate(chunk):
    scale = np.asarray(q.scale[i]).mean(-1)  # [N]
    xy, _ = geometry.project(cells, s["intrinsics"][0], s["cam_to_world"][0], xp=np)
    h, w = s["depths"][0].shape
    col, row = np.floor(xy[:, 0]).astype(int), np.floor(xy[:, 1]).astype(int)
    inside = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    true = s["depths"][0][np.clip(row, 0, h - 1), np.clip(col, 0, w - 1)]
    dist = np.linalg.norm(cells - s["cam_to_world"][0][:3, 3], axis=-1)
    share = np.asarray(q.seen[i], np.float32) if q.seen is not None else inside.astype(np.float32)
    seen = share > 0
    scale = np.where(seen, scale, 1.0) if q.seen is None else scale
    scale = np.stack([scale, share], -1)
    cats["outside the view"].append(scale[~seen].reshape(-1, 2))
    v = seen
    cats["on a background ray"].append(scale[v & (true == 0)])
    hit = v & (true > 0)
    cats["in front of the surface"].append(scale[hit & (dist < true - margin)])
    cats["at the surface"].append(scale[hit & (np.abs(dist - true) <= margin)])
    cats["0.15-0.6 behind the surface"].append(scale[hit & (dist > true + margin) & (dist <= true + 0.6)])
    cats["more than 0.6 behind"].append(scale[hit & (dist > true + 0.6)])
print(f"{workdir} step {step}, {n} test scenes from view 0 alone: mean posterior scale of the cells (mean over D)")
for k, v in cats.items():
  v = np.concatenate(v)
  print(f"  {k:28s} {len(v) / n:6.1f} cells per scene, views' scale {v[:, 0].mean():.3f}, their share {v[:, 1].mean():.3f}")
