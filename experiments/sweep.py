"""Runs a hyperparameter sweep: one training run per trial, then a summary.

  python -m experiments.sweep --config=experiments/configs/shape_scenes.py:tiny \\
      --sweep=experiments/sweeps/latent_dim.py --workdir=DIR [--dry_run] [--config.x=y ...]

A sweep file defines ``get_sweep()`` returning a list of dicts of config
overrides (build products with itertools.product). Each trial trains in
``DIR/trial_<i>`` on this machine, one after another; with ``--dry_run`` the
command prints one training command line per trial instead (for a cluster
launcher). Afterwards ``DIR/summary.csv`` and ``DIR/summary.md`` hold each
trial's overrides and its last logged metrics. Extra ``--config.x=y`` flags
apply to every trial.
"""

from __future__ import annotations

import csv
import difflib
import importlib.util
import os
import shlex
import subprocess
import sys

from absl import app, flags

from experiments import common
from nerf_vae_jax import errors
from nerf_vae_jax.train import summaries

flags.DEFINE_string("config", None, "Experiment config file[:variant] for every trial.")
flags.DEFINE_string("sweep", None, "A file with get_sweep().")
flags.DEFINE_string("workdir", None, "Trials go to WORKDIR/trial_<i>.")
flags.DEFINE_bool("dry_run", False, "Print the trial commands only.")
flags.mark_flags_as_required(["config", "sweep", "workdir"])
FLAGS = flags.FLAGS

COLUMNS = ("step", "loss", "elbo_per_pixel", "kl", "psnr")


def load_sweep(path: str) -> list[dict]:
  spec = importlib.util.spec_from_file_location("sweep_file", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  trials = module.get_sweep()
  if not trials or not all(isinstance(t, dict) for t in trials):
    raise errors.ConfigError(f"{path}: get_sweep() must return a non-empty list of dicts of overrides.")
  return trials


def load_config(spec: str):
  """The ConfigDict of a --config value, ``path[:variant]``."""
  path, _, variant = spec.partition(":")
  module_spec = importlib.util.spec_from_file_location("config_file", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(variant) if variant else module.get_config()


def check_trials(config, trials: list[dict]) -> None:
  """Raises ConfigError (a ValueError), before anything trains, if a trial names a key the
  config lacks or gives a value of the wrong type (ml_collections ignores
  unknown keys here, so they are looked up first)."""
  known = set(_flat_keys(config))
  for i, trial in enumerate(trials):
    for key in trial:
      if key not in known:
        near = difflib.get_close_matches(key, sorted(known), n=3)
        raise errors.ConfigError(f"trial {i}: the config has no key {key!r}"
                                 + (f"; did you mean {near}?" if near else "."))
    try:
      config.copy_and_resolve_references().update_from_flattened_dict(trial)
    except TypeError as e:
      raise errors.ConfigError(f"trial {i}: {e}") from None


def _flat_keys(config, prefix: str = "") -> list[str]:
  keys = []
  for k, v in config.items():
    keys += _flat_keys(v, f"{prefix}{k}.") if hasattr(v, "items") else [prefix + k]
  return keys


def trial_command(config: str, workdir: str, overrides: dict, extra: list[str]) -> list[str]:
  return [sys.executable, "-m", "experiments.train", f"--config={config}", f"--workdir={workdir}", *extra,
          *(f"--config.{k}={v}" for k, v in overrides.items())]


def write_summary(workdir: str, trials: list[dict]) -> None:
  keys = sorted({k for t in trials for k in t})
  rows = []
  for i, t in enumerate(trials):
    metrics = summaries.read_metrics(os.path.join(workdir, f"trial_{i}"))
    last = metrics[-1] if metrics else {}
    rows.append({"trial": i, **{k: t.get(k, "") for k in keys}, **{c: last.get(c, "") for c in COLUMNS}})
  header = ["trial", *keys, *COLUMNS]
  os.makedirs(workdir, exist_ok=True)  # trials that failed before training made nothing
  with open(os.path.join(workdir, "summary.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, header)
    w.writeheader()
    w.writerows(rows)
  fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
  with open(os.path.join(workdir, "summary.md"), "w") as f:
    f.write("| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n")
    for r in rows:
      f.write("| " + " | ".join(fmt(r[h]) for h in header) + " |\n")


def run_sweep(config: str, sweep_file: str, workdir: str, extra: list[str], dry_run: bool) -> None:
  """Trains (or, dry, prints) every trial of ``sweep_file``, then writes the summary; raises ConfigError
  before anything trains on a bad sweep, and UserError after the summary if any trial failed."""
  bad = [a for a in extra if not a.startswith("--config.")]
  if bad:
    raise errors.ConfigError(f"unknown arguments {bad}; only --config.x=y overrides pass through to the trials.")
  trials = load_sweep(sweep_file)
  try:
    check_trials(load_config(config), trials)
  except errors.ConfigError as e:
    raise errors.ConfigError(f"{sweep_file}: {e}") from None
  failed = []
  for i, overrides in enumerate(trials):
    cmd = trial_command(config, os.path.join(workdir, f"trial_{i}"), overrides, extra)
    if dry_run:
      print(shlex.join(["python", *cmd[1:]]))
      continue
    print(f"trial {i + 1}/{len(trials)}: {overrides}", flush=True)
    if subprocess.run(cmd).returncode != 0:
      failed.append(i)
      print(f"trial {i} failed; see its output above.", file=sys.stderr)
  if dry_run:
    return
  write_summary(workdir, trials)
  print(f"Summary: {os.path.join(workdir, 'summary.md')} and summary.csv")
  if failed:
    raise errors.UserError(f"{len(failed)} of {len(trials)} trials failed (trials {failed}); their output is "
                           f"above, and the summary holds what they logged. Rerun the sweep to resume them.")


def main(argv) -> int:
  return common.run(run_sweep, config=FLAGS.config, sweep_file=FLAGS.sweep, workdir=FLAGS.workdir,
                    extra=argv[1:], dry_run=FLAGS.dry_run)


if __name__ == "__main__":
  app.run(lambda argv: sys.exit(main(argv)), flags_parser=lambda argv: flags.FLAGS(argv, known_only=True))
