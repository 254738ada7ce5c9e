"""The training loop in-process (as the Flax examples test theirs): logs, checkpoints,
exact resume, fallback past a damaged checkpoint, a non-finite loss. On 2 host devices."""

import json
import os
import shutil

import numpy as np
import pytest
from conftest import small_config

from nerf_vae_jax.train import loop

pytestmark = pytest.mark.xdist_group("loop")


def _losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return {r["step"]: r["loss"] for r in map(json.loads, f)}


@pytest.fixture(scope="module")
def reference(tiny_data_dir, tmp_path_factory):
  """An uninterrupted 12-step run, checkpoints at 4, 8, 12."""
  workdir = str(tmp_path_factory.mktemp("reference"))
  last = loop.train(small_config(tiny_data_dir, 12), workdir)
  return workdir, last


def test_logs_checkpoints_and_config(reference):
  workdir, last = reference
  losses = _losses(workdir)
  assert sorted(losses) == list(range(1, 13)) and all(np.isfinite(list(losses.values())))
  assert last["loss"] == losses[12] and last["rays_per_s"] > 0
  assert sorted(int(d) for d in os.listdir(os.path.join(workdir, "checkpoints"))) == [4, 8, 12]
  with open(os.path.join(workdir, "config.json")) as f:
    assert json.load(f)["model"]["latent_dim"] == 16


def test_resume_continues_with_exactly_the_same_losses(reference, tiny_data_dir, tmp_path):
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
