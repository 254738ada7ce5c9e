"""Sweeps: trial command lines and the summary tables (no training needed)."""

import csv
import glob
import json
import subprocess
import sys

import pytest

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


@pytest.mark.parametrize("path", [p for p in sorted(glob.glob("experiments/sweeps/*.py"))
                                  if not p.endswith("__init__.py")])
def test_every_sweep_file_applies_to_the_tiny_config(path):
  sweep.check_trials(sweep.load_config("experiments/configs/shape_scenes.py:tiny"), sweep.load_sweep(path))


def test_a_misspelt_key_or_a_wrong_type_stops_the_sweep_before_any_trial(tmp_path):
  config = sweep.load_config("experiments/configs/shape_scenes.py:tiny")
  with pytest.raises(ValueError, match=r"trial 1: the config has no key 'model.latnt_dim'; did you mean "
                                       r"\['model.latent_dim'"):
    sweep.check_trials(config, [{"model.latent_dim": 8}, {"model.latnt_dim": 8}])
  with pytest.raises(ValueError, match="trial 0: .*background_token"):
    sweep.check_trials(config, [{"model.background_token": 0.5}])
  bad = tmp_path / "bad.py"
  bad.write_text("def get_sweep():\n  return [{'train.learning_rte': 1e-3}]\n")
  r = subprocess.run([sys.executable, "-m", "experiments.sweep", "--config=experiments/configs/shape_scenes.py:tiny",
                      f"--sweep={bad}", f"--workdir={tmp_path}/w"], capture_output=True, text=True)
  assert r.returncode == 1 and "train.learning_rte" in r.stderr and "train.learning_rate" in r.stderr
  assert not (tmp_path / "w").exists()


def test_a_failed_trial_makes_the_sweep_fail_after_its_summary(tmp_path):
  one = tmp_path / "one.py"
  one.write_text("def get_sweep():\n  return [{'model.latent_dim': 8}]\n")
  r = subprocess.run([sys.executable, "-m", "experiments.sweep", "--config=experiments/configs/shape_scenes.py:tiny",
                      f"--sweep={one}", f"--workdir={tmp_path}/w", "--config.train.num_steps=abc"],
                     capture_output=True, text=True, timeout=300)
  assert r.returncode == 1, r.stderr[-2000:]
  assert r.stderr.strip().splitlines()[-1].startswith("error: 1 of 1 trials failed (trials [0])")
  assert (tmp_path / "w" / "summary.csv").exists()
