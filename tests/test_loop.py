"""The training loop in-process (as the Flax examples test theirs): logs, checkpoints,
exact resume, fallback past a damaged checkpoint, a non-finite loss. On 2 host devices."""

import json
import os
import shutil

import numpy as np
import pytest
from conftest import small_config

from nerf_vae_jax.train import loop


def _losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return {r["step"]: r["loss"] for r in map(json.loads, f)}


@pytest.fixture(scope="module")
def reference(tiny_data_dir, tmp_path_factory):
  """An uninterrupted 12-step run, checkpoints at 4, 8, 12, preview images at 6 and 12."""
  workdir = str(tmp_path_factory.mktemp("reference"))
  config = small_config(tiny_data_dir, 12)
  config.train.image_every = 6
  last = loop.train(config, workdir)
  return workdir, last


def test_logs_checkpoints_and_config(reference):
  workdir, last = reference
  losses = _losses(workdir)
  assert sorted(losses) == list(range(1, 13)) and all(np.isfinite(list(losses.values())))
  assert last["loss"] == losses[12] and last["rays_per_s"] > 0 and last["stopped"] is None
  assert sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints"))) == [4, 8, 12]
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["model"]["latent_dim"] == 16
  (events,) = os.listdir(os.path.join(workdir, "tensorboard"))
  with open(os.path.join(workdir, "tensorboard", events), "rb") as f:
    assert f.read().count(b"IEND\xaeB`\x82") == 2  # two PNG images: the previews at steps 6 and 12


def test_resume_continues_with_exactly_the_same_losses(reference, tiny_data_dir, tmp_path):
  """(Without preview images: rendering them must not change training.)"""
  workdir, _ = reference
  loop.train(small_config(tiny_data_dir, 8), str(tmp_path))  # stops at 8 ...
  loop.train(small_config(tiny_data_dir, 12), str(tmp_path))  # ... and goes on to 12
  assert _losses(tmp_path) == _losses(workdir)  # bit for bit, steps 1..12


def test_damaged_latest_checkpoint_falls_back_and_retrains_the_same(reference, tiny_data_dir, tmp_path, caplog):
  workdir = tmp_path / "run"
  shutil.copytree(reference[0], workdir)
  for root, _, files in os.walk(workdir / "checkpoints" / "12" / "state"):
    for f in files:
      with open(os.path.join(root, f), "wb") as fh:
        fh.write(b"garbage")
  loop.train(small_config(tiny_data_dir, 12), str(workdir))
  assert "falling back to step 8" in caplog.text
  assert os.path.isdir(workdir / "checkpoints" / "damaged_12")  # kept, not deleted
  assert _losses(workdir) == _losses(reference[0])


def test_non_finite_loss_stops_with_a_clear_message(tiny_data_dir, tmp_path):
  config = small_config(tiny_data_dir, 5)
  config.loss.likelihood_scale = 1e-30
  with pytest.raises(loop.NonFiniteLossError, match="The loss became inf at step 1; stopping"):
    loop.train(config, str(tmp_path))
  assert not os.path.exists(tmp_path / "checkpoints" / "1")


def test_time_budget_stops_with_a_checkpoint_and_logs_elapsed_minutes(tiny_data_dir, tmp_path, capsys):
  config = small_config(tiny_data_dir, 12, ckpt_every=12)  # the reference's step: compiled already
  config.train.time_budget_minutes = 1e-6  # spent by the end of the first step
  last = loop.train(config, str(tmp_path))
  assert "Stopping (time budget): saved a checkpoint at step 1" in capsys.readouterr().out
  assert os.listdir(tmp_path / "checkpoints") == ["1"]
  assert last["elapsed_minutes"] > 0 and _losses(tmp_path).keys() == {1} and last["stopped"] == "time budget"


def test_memory_is_reported_planned_and_a_step_that_cannot_fit_stops_before_training(tiny_data_dir, tmp_path,
                                                                                    capsys):
  from nerf_vae_jax.train import memory, memory_plan
  config = small_config(tiny_data_dir, 1)
  # test_memory_plan's config (the global latent: the plan does not depend on it, and it compiles sooner).
  config.model.latent, config.model.prior = "global", "independent"
  per_device = config.copy_and_resolve_references()
  per_device.train.batch_size = 4  # batch 8 over the 2 devices
  used = memory_plan.step_memory(per_device)["total"] / memory.GIB
  assert 0 < used < 4
  # With a limit the plan runs first: at 60% of what the step needs, it picks a lever (remat first on the CPU),
  # saves it with the config, and the step it compiles fits.
  config.train.memory_limit_gib = 0.6 * used
  loop.train(config, str(tmp_path / "planned"))
  out = capsys.readouterr().out
  plan = next(l for l in out.splitlines() if l.startswith("Memory plan: "))
  assert "remat chunks 8" in plan and "config.model.remat_chunks=8" in plan, plan
  with open(tmp_path / "planned" / "config.json") as f:
    saved = json.load(f)
  assert saved["model"]["remat_chunks"] == 8 and f"{saved['train']['microbatches']} micro-batch(es)" in plan
  line = next(l for l in out.splitlines() if l.startswith("Training step memory per device"))
  assert float(line.split(": ")[1].split(" GiB")[0]) < 0.6 * used and "4 scene(s) x 32 rays per device" in line
  assert "step 1/1" in out and "s after start-up)" in out
  # 100x too big: nothing fits, and the run stops before its first step with what each lever would need.
  config.train.memory_limit_gib = used / 100
  with pytest.raises(memory.OutOfMemoryError, match=r"Nothing is predicted to fit .* 4 scene\(s\) per device. "
                                                    r"Predicted: 1 micro-batch\(es\), remat chunks off: .*MiB.*bfloat16"):
    loop.train(config, str(tmp_path / "too_small"))
  assert not os.path.exists(tmp_path / "too_small" / "metrics.jsonl")
  # A compiled step over the capacity (a plan that predicted too little, or the CPU without a limit) stops
  # with the fixes in order: the micro-batches that would fit, remat, bfloat16, a smaller batch.
  config.train.memory_limit_gib = None
  step = {"total": 100 * memory.GIB, "temporaries": 99 * memory.GIB, "arguments": memory.GIB}
  with pytest.raises(memory.OutOfMemoryError, match=r"It does not fit \(\d+\.\dx.*config.train.microbatches=4 \(now 1"
                                                    r".*config.model.remat_chunks=8.*bfloat16.*batch_size \(now 8 over 2"):
    memory.report(step, memory.GIB, config)


def test_a_stop_signal_that_also_killed_the_data_workers_still_saves_the_step_reached(tiny_data_dir, tmp_path,
                                                                                      monkeypatch):
  """A SIGTERM to the whole process group stops grain's workers too: the next batch then raises instead of
  arriving. The run must save the last finished step (with the data position) rather than die."""
  import signal
  real = loop.input_pipeline

  class DyingWorkers:
    def __init__(self, it):
      self.it, self.served = it, 0

    def __next__(self):
      if self.served == 3:
        os.kill(os.getpid(), signal.SIGTERM)  # the trainer's handler records it ...
        raise RuntimeError("Worker process was terminated unexpectedly with exit code -15.")  # ... as grain says
      self.served += 1
      return next(self.it)

    def get_state(self):
      return self.it.get_state()

    def set_state(self, state):
      self.it.set_state(state)

  monkeypatch.setattr(loop, "input_pipeline", lambda *a: DyingWorkers(real(*a)))
  last = loop.train(small_config(tiny_data_dir, 12, ckpt_every=12), str(tmp_path))
  assert last["stopped"] == signal.SIGTERM  # what the demo reads to stop too
  assert os.listdir(tmp_path / "checkpoints") == ["3"]
  assert sorted(_losses(tmp_path)) == [1, 2, 3]


def test_a_data_error_without_a_stop_signal_is_raised(tiny_data_dir, tmp_path, monkeypatch):
  class Broken:
    def __next__(self):
      raise RuntimeError("a worker crashed")

  monkeypatch.setattr(loop, "input_pipeline", lambda *a: Broken())
  with pytest.raises(RuntimeError, match="a worker crashed"):
    loop.train(small_config(tiny_data_dir, 12), str(tmp_path))
