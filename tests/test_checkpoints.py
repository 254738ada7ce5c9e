"""Checkpoints: a save/restore round trip, the fallback past a damaged checkpoint, missing steps."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from nerf_vae_jax import sharding
from nerf_vae_jax.train import checkpoints


def _state(step):
  return {"params": {"w": jnp.full((3, 2), float(step))}, "step": jnp.asarray(step, jnp.int32)}


def _abstract():
  return checkpoints.abstract_like(_state(0), sharding.replicated(sharding.make_mesh()))


def _save(workdir, steps):
  mngr = checkpoints.manager(str(workdir), keep=5)
  for s in steps:
    checkpoints.save(mngr, s, _state(s), {"position": s * 10})
  mngr.wait_until_finished()
  return mngr


def test_round_trip_restores_state_and_data_position(tmp_path):
  mngr = _save(tmp_path, [1, 2])
  state, data, step = checkpoints.restore(mngr, _abstract())
  assert step == 2 and data == {"position": 20}
  np.testing.assert_array_equal(state["params"]["w"], np.full((3, 2), 2.0))
  assert state["params"]["w"].sharding == sharding.replicated(sharding.make_mesh())
  state, _, step = checkpoints.restore(mngr, _abstract(), step=1)
  assert step == 1 and int(state["step"]) == 1


def test_damaged_latest_falls_back_to_the_previous_and_keeps_it_aside(tmp_path, caplog):
  mngr = _save(tmp_path, [1, 2])
  for root, _, files in os.walk(tmp_path / "checkpoints" / "2" / "state"):
    for f in files:
      (open(os.path.join(root, f), "wb")).write(b"garbage")
  state, data, step = checkpoints.restore(mngr, _abstract())
  assert step == 1 and data == {"position": 10} and int(state["step"]) == 1
  assert "falling back to step 1" in caplog.text
  assert (tmp_path / "checkpoints" / "damaged_2").is_dir()  # moved aside, not deleted
  assert mngr.all_steps() == [1]


def test_missing_step_and_empty_directory_are_clear_errors(tmp_path):
  mngr = _save(tmp_path / "a", [1, 2])
  with pytest.raises(checkpoints.NoCheckpointError, match=r"No checkpoint at step 5 .*available: \[1, 2\]"):
    checkpoints.restore(mngr, _abstract(), step=5)
  with pytest.raises(checkpoints.NoCheckpointError, match="No checkpoint in"):
    checkpoints.restore(checkpoints.manager(str(tmp_path / "b")), _abstract())
