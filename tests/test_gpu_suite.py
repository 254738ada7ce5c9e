"""experiments/gpu_suite.sh: the named phases run, in order, and none starts without the time it needs."""

import os
import subprocess

SUITE = os.path.join(os.path.dirname(__file__), os.pardir, "experiments", "gpu_suite.sh")


def _run(tmp_path, **env):
  out = tmp_path / "out"
  subprocess.run(["bash", SUITE, str(out), str(tmp_path / "work")], env={**os.environ, **env}, check=True,
                 capture_output=True, timeout=60)
  return [line for line in (out / "suite.log").read_text().splitlines() if line.startswith("===")]


def test_only_the_named_phases_run(tmp_path):
  # PY=echo: each python command prints its arguments instead of running, so the log shows what would run.
  stamps = _run(tmp_path, PHASES="env", PY="echo")
  assert [s.split("] ", 1)[1] for s in stamps] == ["env", "done"]
  log = (tmp_path / "out" / "suite.log").read_text()
  assert "-c import jax" in log


def test_a_phase_without_time_left_is_skipped(tmp_path):
  stamps = _run(tmp_path, PHASES="build pipeline", PY="false", DEADLINE="5")
  assert any("skipped" in s and "experiments.build" in s for s in stamps)
  assert any("skipped" in s and "experiments.benchmark_data" in s for s in stamps)
  assert stamps[-1].endswith("done")


def test_train64_then_generate_without_the_baseline(tmp_path):
  stamps = _run(tmp_path, PHASES="train64 generate", PY="echo", BASELINE_SCENES="0", GEN_SCENES="32")
  names = [s.split("] ", 1)[1] for s in stamps]
  assert names[0].startswith("train64: grid_4min") and names[-1] == "done"
  assert not any("per-scene NeRF" in n for n in names)
  log = (tmp_path / "out" / "suite.log").read_text()
  assert "experiments.nerf_baseline" not in log
  assert "-m experiments.generate --workdir=" in log and "--metric_scenes=32" in log
