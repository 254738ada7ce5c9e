"""Sweeps: trial command lines and the summary tables (no training needed)."""

import csv
import json
import subprocess
import sys

from experiments import sweep


def test_dry_run_prints_one_command_per_trial(tmp_path):
  r = subprocess.run([sys.executable, "-m", "experiments.sweep", "--config=experiments/configs/shape_scenes.py:tiny",
                      "--sweep=experiments/sweeps/latent_dim.py", f"--workdir={tmp_path}", "--dry_run",
                      "--config.train.num_steps=10"], capture_output=True, text=True, check=True)
  lines = r.stdout.strip().splitlines()
  assert len(lines) == 6 == len(sweep.load_sweep("experiments/sweeps/latent_dim.py"))
  assert all("--config.train.num_steps=10" in l and f"--workdir={tmp_path}/trial_" in l for l in lines)
  assert "--config.model.latent_dim=128 --config.model.posterior=poe" in lines[-1]


def test_summary_holds_each_trials_last_metrics(tmp_path):
  trials = [{"model.latent_dim": 32}, {"model.latent_dim": 64}]
  for i, psnr in enumerate([20.0, 22.5]):
    (tmp_path / f"trial_{i}").mkdir()
    rows = [{"step": 5, "loss": 1.0, "psnr": 1.0}, {"step": 10, "loss": 0.5 - i, "psnr": psnr}]
    (tmp_path / f"trial_{i}" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
  sweep.write_summary(str(tmp_path), trials)
  rows = list(csv.DictReader(open(tmp_path / "summary.csv")))
  assert [(r["model.latent_dim"], r["step"], float(r["psnr"])) for r in rows] == [("32", "10", 20.0),
                                                                                   ("64", "10", 22.5)]
  md = (tmp_path / "summary.md").read_text()
  assert "| trial | model.latent_dim |" in md and "| 1 | 64 | 10 | -0.5 |" in md
