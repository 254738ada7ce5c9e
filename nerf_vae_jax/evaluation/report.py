"""The evaluation report: one self-contained folder per checkpoint step.

``write(workdir, step)`` gathers what the evaluation commands left in
``workdir/eval``:

  eval/<step>/<split>/metrics.json (+ grid_k*.png, orbit_*.gif)  evaluation.run (experiments.evaluate)
  eval/<step>/generate/metrics.json (+ *.png, *.gif)             evaluation.samples (experiments.generate)
  eval/nerf_baseline/<name>/metrics.json (+ grid_*.png)          evaluation.nerf_comparison

and writes eval/<step>/report.html (tables and images by relative path: it
opens offline), comparison.md (NeRF-VAE against the per-scene NeRF) and
comparison.png. Rerun by each command, so the report is always current.
"""

from __future__ import annotations

import glob
import html
import json
import os

COLUMNS = ("num_context_views", "psnr", "ssim", "mse", "object_mse", "background_mse", "depth_mae", "mask_iou", "hazy",
           "fog", "elbo_per_pixel", "iwae_per_pixel", "baseline_psnr")


def _load(path):
  with open(path) as f:
    return json.load(f)


def _fmt(v):
  if v is None:
    return "-"
  return f"{v:.4f}" if isinstance(v, float) and abs(v) < 1 else (f"{v:.2f}" if isinstance(v, float) else str(v))


def _table(rows, columns, fmt="html"):
  if fmt == "md":
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows])
  head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
  body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
  return f"<table><tr>{head}</tr>{body}</table>"


def comparison_rows(vae: dict, nerf: dict | None) -> list[dict]:
  """Per K: NeRF-VAE's and NeRF's PSNR, SSIM and MSE on the same held-out views, and the mean-colour baseline."""
  by_k = {r["num_context_views"]: r for r in (nerf or {}).get("results", [])}
  refined = {r["num_context_views"]: r for r in vae.get("refined_results", [])}
  rows = []
  for r in vae["results"]:
    k, n = r["num_context_views"], by_k.get(r["num_context_views"], {})
    rows.append({"K": k, "NeRF-VAE psnr": r["psnr"], "NeRF-VAE refined psnr": refined.get(k, {}).get("psnr"),
                 "NeRF psnr": n.get("psnr"), "NeRF-VAE mse": r["mse"], "NeRF mse": n.get("mse"),
                 "NeRF-VAE ssim": r["ssim"], "NeRF ssim": n.get("ssim"), "mean-colour psnr": r["baseline_psnr"]})
  return rows


def _plot(path, vae: dict, nerf: dict | None, dense: dict | None) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, 2 if dense else 1, figsize=(10 if dense else 5, 3.6), squeeze=False)
  ax = axes[0, 0]
  ks = [r["num_context_views"] for r in vae["results"]]
  ax.plot(ks, [r["mse"] for r in vae["results"]], "o-", label="NeRF-VAE")
  if vae.get("refined_results"):
    ax.plot(ks, [r["mse"] for r in vae["refined_results"]], "o--", label="NeRF-VAE, refined")
  if nerf:
    ax.plot([r["num_context_views"] for r in nerf["results"]], [r["mse"] for r in nerf["results"]], "s-",
            label="per-scene NeRF")
  ax.plot(ks, [r["baseline_mse"] for r in vae["results"]], ":", c="gray", label="mean colour")
  ax.set(xlabel="context views K", ylabel="held-out MSE", xticks=ks, title=f"{vae['split']} split")
  ax.legend()
  if dense:
    ax = axes[0, 1]
    ax.plot([r["num_views"] for r in dense["results"]], [r["mse"] for r in dense["results"]], "s-",
            label="per-scene NeRF (dense)")
    # No NeRF-VAE line here: the dense scenes are not the evaluated split's (other image size).
    ax.set(xscale="log", xlabel="NeRF training views", ylabel="held-out MSE",
           title=f"NeRF as views grow ({dense['dataset']})")
    ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def sample_tables(m: dict) -> list[str]:
  """HTML tables of ``evaluation.samples``' metrics.json: sample quality and the far-side spread."""
  parts = []
  if "samples" in m:
    s = m["samples"]
    fd = s["frechet"]
    parts.append(f"<h3>Sample quality ({s['num_scenes']} scenes x {s['views_per_scene']} views per set, "
                 f"{s['prior']} prior)</h3>")
    rows = [{"set": name, "Fréchet distance": fd.get(key)} for name, key in
            (("prior samples", "samples"), ("independent N(0, I) cells", "independent_cells"),
             ("real views (floor)", "floor"), ("reconstructions from 4 views", "reconstructions"),
             ("mean colour", "mean_colour"))]
    parts.append(_table(rows, ["set", "Fréchet distance"]))
    keys = ("coverage_samples", "coverage_data", "coverage_ratio", "coverage_w1", "objects_per_view_samples",
            "objects_per_view_data", "count_tv", "haze_share", "fog_share")
    objs = [dict(s["objects"], set="prior samples"), dict(s["objects_independent_cells"], set="independent cells")]
    parts.append(_table(objs, ("set",) + keys))
    parts.append("<p>Probe (held out): " + ", ".join(f"{k} {_fmt(v)}" for k, v in s["probe"].items()) + "</p>")
  if "far_side" in m:
    f = m["far_side"]
    parts.append(f"<h3>Far side from 1 view ({f['num_scenes']} scenes, {f['num_samples']} posterior samples)</h3>")
    parts.append(_table([f], ("spread_seen", "spread_unseen", "diversity_ratio", "spread_hidden", "hidden_ratio",
                              "spread_background", "pixels_seen", "pixels_unseen", "pixels_hidden")))
  return parts


def write(workdir: str, step: int) -> str:
  """(Re)writes eval/<step>/report.html, comparison.md and comparison.png; returns the HTML path."""
  root = os.path.join(workdir, "eval", str(step))
  os.makedirs(root, exist_ok=True)
  rel = lambda p: os.path.relpath(p, root)
  nerf_dir = os.path.join(workdir, "eval", "nerf_baseline")
  nerf = {os.path.basename(os.path.dirname(p)): _load(p)
          for p in sorted(glob.glob(os.path.join(nerf_dir, "*", "metrics.json")))}
  parts = [f"<h1>NeRF-VAE evaluation: {html.escape(os.path.abspath(workdir))}, step {step}</h1>"]
  md = [f"# NeRF-VAE against a per-scene NeRF ({os.path.abspath(workdir)}, step {step})\n"]
  for path in sorted(glob.glob(os.path.join(root, "*", "metrics.json"))):
    if os.path.basename(os.path.dirname(path)).startswith("generate"):  # the samples' metrics: below
      continue
    m = _load(path)
    split_dir = os.path.dirname(path)
    folder = os.path.basename(split_dir)  # the split, or a subset of it (run.eval_folder)
    parts.append(f"<h2>{html.escape(m['split'])}: {m['num_scenes']} scenes ({html.escape(folder)}/)</h2>")
    parts.append(_table(m["results"], COLUMNS))
    if m.get("refined_results"):
      parts.append(f"<h3>With {m['refine_steps']} steps of test-time refinement</h3>")
      parts.append(_table(m["refined_results"], COLUMNS))
    baseline = nerf.get(m["split"])
    if baseline:
      rows = comparison_rows(m, baseline)
      parts.append(f"<h3>Against a per-scene NeRF ({baseline['num_scenes']} scenes, {baseline['steps']} steps "
                   f"each)</h3>" + _table(rows, list(rows[0])))
      md += [f"## {m['split']} split, {m['num_scenes']} scenes\n", _table(rows, list(rows[0]), "md"), ""]
      if baseline["num_scenes"] != m["num_scenes"]:
        note = (f"NeRF-VAE on {m['num_scenes']} scenes, the NeRF on the first {baseline['num_scenes']} of "
                f"them.")
        parts.append(f"<p>{note}</p>")
        md += [note, ""]
      plot = os.path.join(root, f"comparison_{folder}.png")
      _plot(plot, m, baseline, nerf.get("dense"))
      parts.append(f'<img src="{rel(plot)}">')
      md += [f"![comparison]({os.path.basename(plot)})", ""]
    for img in sorted(glob.glob(os.path.join(split_dir, "grid_k*.png"))):
      parts.append(f'<figure><img src="{rel(img)}"><figcaption>{os.path.basename(img)}: context | target | '
                   f"prediction | depth | error</figcaption></figure>")
    gifs = sorted(glob.glob(os.path.join(split_dir, "orbit_*.gif")))
    parts.append("<p>" + "".join(f'<img src="{rel(g)}">' for g in gifs) + "</p>")
  if "dense" in nerf:
    rows = nerf["dense"]["results"]
    cols = [c for c in ("num_views", "psnr", "ssim", "mse", "depth_mae", "mask_iou") if c in rows[0]]
    parts.append("<h2>Per-scene NeRF as its training views grow (dense)</h2>" + _table(rows, cols))
    md += ["## Per-scene NeRF as its training views grow (dense)\n", _table(rows, cols, "md"), ""]
  for gen_dir in sorted(glob.glob(os.path.join(root, "generate*"))):  # generate/, and generate_t<T>/ if any
    gen = sorted(glob.glob(os.path.join(gen_dir, "*.png")) + glob.glob(os.path.join(gen_dir, "*.gif")))
    gen_metrics = os.path.join(gen_dir, "metrics.json")
    parts.append("<h2>Samples from the prior, what one view leaves open, and latent interpolations "
                 f"({html.escape(os.path.basename(gen_dir))}/)</h2>")
    if os.path.exists(gen_metrics):
      parts += sample_tables(_load(gen_metrics))
    parts += [f'<figure><img src="{rel(g)}"><figcaption>{os.path.basename(g)}</figcaption></figure>' for g in gen]
  style = ("body{font-family:sans-serif;margin:2em} table{border-collapse:collapse;margin:1em 0} "
           "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right} img{image-rendering:pixelated;margin:4px}")
  page = f"<!doctype html><html><head><meta charset='utf-8'><title>NeRF-VAE step {step}</title>" \
         f"<style>{style}</style></head><body>{''.join(parts)}</body></html>"
  path = os.path.join(root, "report.html")
  with open(path, "w") as f:
    f.write(page)
  if len(md) > 1:
    with open(os.path.join(root, "comparison.md"), "w") as f:
      f.write("\n".join(md) + "\n")
  return path
