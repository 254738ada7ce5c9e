"""The offline HTML report and the NeRF-VAE vs NeRF comparison, from metrics files alone."""

import json
import os
import re

import numpy as np

from nerf_vae_jax import visualize
from nerf_vae_jax.evaluation import report


def _results(psnr0, key="num_context_views"):
  return [{key: k, "psnr": psnr0 + k, "ssim": 0.5, "mse": 10 ** (-(psnr0 + k) / 10), "depth_mae": 0.1,
           "mask_iou": 0.5, "elbo_per_pixel": 1.0, "iwae_per_pixel": 1.1, "baseline_psnr": 15.0,
           "baseline_mse": 0.03} for k in (1, 2, 3, 4)]


def test_report_tables_comparison_and_images(tmp_path):
  split = tmp_path / "eval" / "7" / "test"
  split.mkdir(parents=True)
  (split / "metrics.json").write_text(json.dumps({"step": 7, "split": "test", "num_scenes": 8,
                                                  "results": _results(20.0)}))
  visualize.save_png(str(split / "grid_k1.png"), np.zeros((4, 4, 3), np.uint8))
  nerf_dir = tmp_path / "eval" / "nerf_baseline" / "test"
  nerf_dir.mkdir(parents=True)
  (nerf_dir / "metrics.json").write_text(json.dumps({"split": "test", "num_scenes": 4, "steps": 100,
                                                     "results": _results(10.0)}))
  html_path = report.write(str(tmp_path), 7)
  page = open(html_path).read()
  assert "24.00" in page and "<h2>test: 8 scenes (test/)</h2>" in page  # NeRF-VAE's K=4 PSNR
  assert "NeRF-VAE on 8 scenes, the NeRF on the first 4 of them." in page
  for src in re.findall(r'src="([^"]+)"', page):  # every picture it shows is there, by relative path
    assert os.path.exists(os.path.join(os.path.dirname(html_path), src)), src
  assert os.path.exists(tmp_path / "eval" / "7" / "comparison_test.png")
  md = open(tmp_path / "eval" / "7" / "comparison.md").read()
  assert "| 4 | 24.00 | - | 14.00 |" in md  # K, NeRF-VAE, (no refinement), NeRF


def test_comparison_rows_pair_the_same_k():
  rows = report.comparison_rows({"results": _results(20.0)}, {"results": _results(10.0)[2:]})
  assert [r["K"] for r in rows] == [1, 2, 3, 4]
  assert rows[0]["NeRF psnr"] is None and rows[3]["NeRF psnr"] == 14.0 and rows[3]["NeRF-VAE psnr"] == 24.0
