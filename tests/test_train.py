"""The experiment runner where a process boundary is the point: exact resume
after SIGKILL, 1 device vs 2 processes of 4 devices (a process-wide setting) and a SIGTERM to one of them,
SIGTERM, and command-line overrides. The loop itself is tested in-process (test_loop.py)."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import run_ok, train_args, xla_flags


_run = run_ok


def _losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return {r["step"]: r["loss"] for r in rows}


def _start_and_signal(env, args, after_step, sig):
  proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          start_new_session=True)
  for line in proc.stdout:
    if line.startswith(f"step {after_step}/"):
      os.killpg(proc.pid, sig)
      break
  out = proc.stdout.read()
  proc.wait(timeout=120)
  return proc.returncode, out


@pytest.fixture(scope="module")
def env(runner_env):
  return runner_env


@pytest.fixture(scope="module")
def reference(env, tmp_path_factory):
  """An uninterrupted 12-step run."""
  e, data_dir = env
  workdir = str(tmp_path_factory.mktemp("reference"))
  _run(e, train_args(data_dir, workdir, 12))
  return workdir


def test_sigkill_and_restart_gives_exactly_the_same_losses(env, reference, tmp_path):
  e, data_dir = env
  code, _ = _start_and_signal(e, train_args(data_dir, tmp_path, 12), after_step=9, sig=signal.SIGKILL)
  assert code == -signal.SIGKILL
  # Saves are asynchronous: the step-8 one may have been cut off mid-write
  # (left as a *.orbax-checkpoint-tmp folder, which is never restored).
  finished = sorted(int(d) for d in os.listdir(tmp_path / "checkpoints") if d.isdigit())
  assert finished and finished[-1] in (4, 8)
  r = _run(e, train_args(data_dir, tmp_path, 12))
  assert f"Resumed from the checkpoint at step {finished[-1]}" in r.stdout
  assert _losses(tmp_path) == _losses(reference)  # bit-exact, every step 1..12
  with open(tmp_path / "config.json") as f:
    cfg = json.load(f)
  assert cfg["train"]["num_steps"] == 12 and cfg["model"]["latent_dim"] == 16  # overrides reach config.json


def test_sigterm_saves_a_checkpoint_before_exiting(env, tmp_path):
  """The signal goes to the whole process group (as `timeout` and schedulers send it): the data workers are
  stopped too, and the run still saves the step it reached. (Without workers, a SIGTERM to one process: the
  two-process test below.)"""
  e, data_dir = env
  code, out = _start_and_signal(e, train_args(data_dir, tmp_path, 1000, ckpt_every=1000,
                                              extra=["--config.data.workers=2"]),
                                after_step=3, sig=signal.SIGTERM)
  assert code == 0 and "Stopping (15" in out and "saved a checkpoint at step" in out, out[-3000:]
  steps = [int(s) for s in os.listdir(tmp_path / "checkpoints")]
  assert len(steps) == 1 and 3 <= steps[0] < 1000


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def test_two_processes_of_four_devices_match_one_device_and_a_signal_to_one_stops_both_at_one_checkpoint(
    env, reference, tmp_path):
  """Two processes (a host each) of 4 devices train as one device does (the same global batch and keys: only
  the order of float32 reductions differs), with preview images on (they touch the global arrays). Then a
  preempted host: the other process learns of it at the next agreement and both save the same step. One pair
  of processes serves every check (each start-up compiles the step)."""
  e, data_dir = env
  e = dict(e, XLA_FLAGS=xla_flags(4))
  port, logs = _free_port(), [tmp_path / f"process_{i}.log" for i in range(2)]
  procs = []
  for i in range(2):
    with open(logs[i], "w") as log:
      procs.append(subprocess.Popen(
          train_args(data_dir, tmp_path / "run", 1000, ckpt_every=1000,
                     extra=[f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}",
                            "--config.train.stop_check_every=2", "--config.train.image_every=2"]),
          env=e, stdout=log, stderr=subprocess.STDOUT, text=True))
  try:
    deadline = time.time() + 240
    while "step 3/1000" not in logs[0].read_text():
      assert time.time() < deadline and procs[0].poll() is None, logs[0].read_text()[-3000:]
      time.sleep(0.2)
    procs[1].send_signal(signal.SIGTERM)  # process 1 only: it does not log, and process 0 is not told
    codes = [p.wait(timeout=120) for p in procs]
  finally:
    for p in procs:
      p.kill()
  outs = [log.read_text() for log in logs]
  assert codes == [0, 0], outs[0][-2000:] + outs[1][-2000:]
  assert "on 8 cpu device(s), 2 process(es)" in outs[0]
  assert "step 3/1000" not in outs[1]  # only process 0 logs
  stopped = [re.search(r"\[process (\d)\] Stopping \((.*)\): saved a checkpoint at step (\d+)", o) for o in outs]
  assert all(stopped), outs
  assert stopped[0].group(2) == "another process was told to stop" and stopped[1].group(2) == "15"
  step = int(stopped[0].group(3))
  assert step == int(stopped[1].group(3)) and step % 2 == 0 and 4 <= step < 1000
  assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == [str(step)]
  ref, got = _losses(reference), _losses(tmp_path / "run")
  np.testing.assert_allclose([got[s] for s in range(1, 5)], [ref[s] for s in range(1, 5)], rtol=1e-4)


@pytest.mark.parametrize("override, message", [
    ("--config.model.nope=3", "unknown config field"),
    ("--config.train.num_steps=abc", "invalid literal for int"),
    ("--config.model.posterior=bogus", "config.model.posterior='bogus'; choose one of average, poe"),
])
def test_bad_overrides_are_clear_errors(env, tmp_path, override, message):
  e, data_dir = env
  r = subprocess.run(train_args(data_dir, tmp_path, 2, extra=[override]), env=e, capture_output=True, text=True,
                     timeout=300)
  assert r.returncode != 0 and message in r.stderr


def test_wrong_variant_is_one_line(env, tmp_path):
  e, _ = env
  r = subprocess.run([sys.executable, "-m", "experiments.train", "--config=experiments/configs/shape_scenes.py:nosuch",
                      f"--workdir={tmp_path}"], env=e, capture_output=True, text=True, timeout=300)
  assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
  assert r.stderr.strip().splitlines()[-1] == ("error: Unknown variant 'nosuch' of shape_scenes.py; choose one of "
                                               "tiny, tiny_long, tiny_reference, global, grid, grid_4min.")


@pytest.mark.parametrize("setting", ["default", "off", "orphan"])
def test_the_entry_points_keep_compiled_programs_unless_told_not_to(tmp_path, setting):
  # common.run turns on JAX's persistent cache under $XDG_CACHE_HOME/nerf_vae_jax/jax (at most 4 GiB); an
  # empty $JAX_COMPILATION_CACHE_DIR turns it off. "orphan": a run stopped between writing an entry's program
  # and its access time left the program alone, which made JAX 0.10 fail every later write; the entry points
  # give it the oldest time first, and the cache grows again.
  env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
  env.update(XDG_CACHE_HOME=str(tmp_path), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PLATFORMS="cpu")
  if setting == "off":
    env["JAX_COMPILATION_CACHE_DIR"] = ""
  orphan = tmp_path / "nerf_vae_jax" / "jax" / "jit_stopped-0123abcd-cache"
  if setting == "orphan":
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"a program whose access time was never written")
  code = ("import jax, jax.numpy as jnp; from experiments import common; "
          "common.run(lambda: print(jax.config.jax_compilation_cache_max_size, "
          "float(jax.jit(lambda x: jnp.sin(x) * 2)(1.0))))")
  out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                       cwd=os.path.join(os.path.dirname(__file__), os.pardir))
  max_size, value = out.stdout.split()[-2:]
  assert abs(float(value) - 2 * np.sin(1.0)) < 1e-6
  assert int(max_size) == (-1 if setting == "off" else 4 * 2 ** 30)  # bounded where the project chose the folder
  cache = tmp_path / "nerf_vae_jax" / "jax"
  written = [p for p in cache.glob("*-cache") if p != orphan] if cache.exists() else []
  assert (len(written) > 0) == (setting != "off"), (out.stderr[-2000:], list(cache.iterdir()))
  assert all(p.with_name(p.name[:-len("-cache")] + "-atime").exists() for p in cache.glob("*-cache"))
  assert "Error writing persistent compilation cache" not in out.stderr
