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


def test_the_plan_is_launched_again_in_a_fresh_run_folder_with_the_same_compilation_cache(tmp_path):
  """The 60-s start of issue #24, on a first launch and on a relaunch that reads the compiled programs."""
  fake = tmp_path / "python"  # prints the cache folder it would use, then its arguments
  fake.write_text('#!/bin/sh\necho "cache=$JAX_COMPILATION_CACHE_DIR $*"\n')
  fake.chmod(0o755)
  stamps = _run(tmp_path, PHASES="plan", PY=str(fake), PLAN_LAUNCHES="2")
  names = [s.split("] ", 1)[1].split(":")[0] for s in stamps]
  assert names == ["plan", "grid float32 at 80 GiB, launch 1", "plan", "grid float32 at 80 GiB, launch 2", "done"]
  runs = [l for l in (tmp_path / "out" / "suite.log").read_text().splitlines() if "-m experiments.train" in l]
  caches = {r.split()[0] for r in runs}  # the suite's own (WORK_DIR/jax_cache) unless the caller set one
  assert len(runs) == 2 and len(caches) == 1 and caches != {"cache="}
  assert [r.split("--workdir=")[1] for r in runs] == [str(tmp_path / "work" / f"run_f32_plan_{i}") for i in (1, 2)]
