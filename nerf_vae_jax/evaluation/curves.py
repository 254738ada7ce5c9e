"""Learning curves: held-out metrics of every checkpoint of a run, against wall-clock training time.

``learning_curve(workdir)`` evaluates each checkpoint (the protocol of
``protocol``: views 0..K-1 as context, views 4.. held out) on the first
``num_scenes`` scenes of a split, from 1 and from 4 context views, and pairs
it with the training minutes the run had spent at that step (``elapsed_minutes``
in metrics.jsonl). Results are cached in WORKDIR/eval/curve_<split>.json, so a
rerun evaluates only new checkpoints. ``plot`` draws several runs' curves side
by side: object-pixel MSE, mask IoU and PSNR over the mean-colour baseline.
"""

from __future__ import annotations

import json
import os

from nerf_vae_jax import errors
from nerf_vae_jax.data import source
from nerf_vae_jax.evaluation import view_metrics, protocol
from nerf_vae_jax.train import checkpoints, summaries, run_dir

# Cheap bounds: the curves are about the renders; the ELBO and IWAE come from experiments.evaluate.
CURVE_SETTINGS = protocol.Settings(num_samples=1, num_rays=256)
FIELDS = ("psnr", "baseline_psnr", "object_mse", "mask_iou", "mse")


def _elapsed_at(rows: list[dict], step: int) -> float | None:
  """Training minutes at ``step``: from the last logged row at or before it."""
  earlier = [r for r in rows if r["step"] <= step and "elapsed_minutes" in r]
  return earlier[-1]["elapsed_minutes"] if earlier else None


def learning_curve(workdir: str, split: str = "test", num_scenes: int = 32, context=(1, 4),
                   data_dir: str | None = None) -> list[dict]:
  """Rows {step, elapsed_minutes, k<K>_<metric>...}, one per checkpoint, oldest first."""
  path = os.path.join(workdir, "eval", f"curve_{split}.json")
  cached = {}
  if os.path.exists(path):
    with open(path) as f:
      cached = {r["step"]: r for r in json.load(f)["rows"]}
  mngr = checkpoints.manager(workdir)
  steps = sorted(mngr.all_steps())
  mngr.close()
  if not steps:
    raise checkpoints.NoCheckpointError(f"{workdir} has no checkpoints: train first.")
  config = run_dir.load_config(workdir)
  src = source.SceneSource(config.data.name, split, data_dir or config.data.data_dir)
  scenes = [src[i] for i in range(min(num_scenes, len(src)))]
  logged = summaries.read_metrics(workdir)
  rows = []
  for step in steps:
    if step in cached:
      rows.append(cached[step])
      continue
    _, model, _, params, _ = run_dir.restore_params(workdir, step)
    row = {"step": step, "elapsed_minutes": _elapsed_at(logged, step), "num_scenes": len(scenes)}
    for k in context:
      per_scene, _ = protocol.evaluate(model, params, scenes, k, CURVE_SETTINGS, seed=config.seed)
      summary = view_metrics.summarize(per_scene)
      # NaN where the dataset has no masks (converted datasets): the object panels stay empty.
      row.update({f"k{k}_{m}": summary.get(m, float("nan")) for m in FIELDS})
    print(f"  {workdir} step {step} ({row['elapsed_minutes'] or 0:.1f} min): "
          + ", ".join(f"K={k} PSNR {row[f'k{k}_psnr']:.2f} (baseline {row[f'k{k}_baseline_psnr']:.2f}) "
                      f"IoU {row[f'k{k}_mask_iou']:.3f} object MSE {row[f'k{k}_object_mse']:.4f}" for k in context),
          flush=True)
    rows.append(row)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:  # after every checkpoint: an interrupted run keeps what it computed
      json.dump({"split": split, "rows": rows}, f, indent=1)
  return rows


def plot(curves: dict[str, list[dict]], path: str, k: int = 4) -> None:
  """Side-by-side curves of several runs ({label: rows}) against training minutes, from K views."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  panels = [("object_mse", "object-pixel MSE (held-out views)"), ("mask_iou", "mask IoU"),
            ("psnr_gain", "PSNR - mean-colour PSNR (dB)")]
  fig, axes = plt.subplots(1, len(panels), figsize=(15, 3.8))
  for label, rows in curves.items():
    rows = [r for r in rows if r.get("elapsed_minutes") is not None]
    if not rows:
      raise errors.UserError(f"{label}: no checkpoint with a logged elapsed time (train with this version).")
    t = [r["elapsed_minutes"] for r in rows]
    for ax, (m, title) in zip(axes, panels):
      y = [r[f"k{k}_psnr"] - r[f"k{k}_baseline_psnr"] if m == "psnr_gain" else r[f"k{k}_{m}"] for r in rows]
      ax.plot(t, y, "o-", ms=3, label=label)
      ax.set(title=f"{title}, K={k}", xlabel="training minutes")
  axes[0].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def last_row_table(curves: dict[str, list[dict]], context=(1, 4)) -> str:
  """A Markdown table of each run's last checkpoint."""
  head = ["run", "step", "minutes"] + [f"K={k} {m}" for k in context for m in ("psnr", "gain", "IoU", "obj MSE")]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  for label, rows in curves.items():
    r = rows[-1]
    cells = [label, str(r["step"]), f"{r['elapsed_minutes'] or float('nan'):.1f}"]
    for k in context:
      cells += [f"{r[f'k{k}_psnr']:.2f}", f"{r[f'k{k}_psnr'] - r[f'k{k}_baseline_psnr']:+.2f}",
                f"{r[f'k{k}_mask_iou']:.3f}", f"{r[f'k{k}_object_mse']:.4f}"]
    lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)
