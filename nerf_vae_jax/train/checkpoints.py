"""Checkpoints: an orbax ``CheckpointManager`` behind three functions.

A checkpoint holds the train state (parameters, optimizer state, step) and
the data iterator's state (JSON), so a resumed run continues with exactly the
next batch. Saves are asynchronous and atomic (orbax writes to a temporary
folder and renames it), so a run killed mid-save leaves the previous
checkpoint intact. The last ``keep`` checkpoints are kept.
"""

from __future__ import annotations

import logging
import os

import jax
import orbax.checkpoint as ocp

from nerf_vae_jax import errors

log = logging.getLogger(__name__)


def manager(workdir: str, keep: int = 3) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=True, create=True)
  return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"), options=options)


def save(mngr: ocp.CheckpointManager, step: int, state, data_state: dict | None = None) -> None:
  """Starts an asynchronous save of (state, data_state) at ``step``."""
  args = {"state": ocp.args.StandardSave(state)}
  if data_state is not None:
    args["data"] = ocp.args.JsonSave(data_state)
  mngr.save(step, args=ocp.args.Composite(**args), force=True)


class NoCheckpointError(errors.UserError):
  """No checkpoint where one was asked for."""


def restore(mngr: ocp.CheckpointManager, abstract_state, step: int | None = None, with_data: bool = True):
  """Restores (state, data_state) into the shardings of ``abstract_state``.

  Without ``step``, the latest checkpoint is tried first; if it cannot be read
  (damaged, half-deleted) it is renamed ``damaged_<step>`` and the next older
  one is used, with a warning. Raises
  NoCheckpointError if there is none, and the read error if ``step`` is given
  and fails.
  """
  steps = sorted(mngr.all_steps(), reverse=True)
  if step is not None:
    if step not in steps:
      raise NoCheckpointError(f"No checkpoint at step {step} in {mngr.directory}; available: {sorted(steps)}.")
    steps = [step]
  if not steps:
    raise NoCheckpointError(f"No checkpoint in {mngr.directory}.")
  for i, s in enumerate(steps):
    args = {"state": ocp.args.StandardRestore(abstract_state)}
    if with_data:
      args["data"] = ocp.args.JsonRestore()
    try:
      out = mngr.restore(s, args=ocp.args.Composite(**args))
      return out["state"], (out["data"] if with_data else None), s
    except Exception as e:  # noqa: BLE001 -- any read failure: fall back to an older checkpoint
      if step is not None or i == len(steps) - 1:
        raise RuntimeError(f"Could not restore the checkpoint at step {s} in {mngr.directory}: {e}") from e
      damaged = os.path.join(os.fspath(mngr.directory), f"damaged_{s}")
      log.warning("Checkpoint at step %d in %s cannot be read (%s); moved it to %s and falling back to step %d.",
                  s, mngr.directory, str(e).splitlines()[0][:200], damaged, steps[i + 1])
      # Moved aside, not deleted (nothing is lost), so that this step can be saved again.
      if jax.process_index() == 0:
        os.replace(os.path.join(os.fspath(mngr.directory), str(s)), damaged)
      mngr.reload()
  raise AssertionError("unreachable")


def abstract_like(tree, sharding):
  """ShapeDtypeStructs of ``tree`` (arrays or ShapeDtypeStructs) with ``sharding``."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def save_tree(path: str, tree) -> None:
  """Saves a pytree of arrays (a small network's parameters, not a run) to the folder ``path``, synchronously."""
  with ocp.Checkpointer(ocp.StandardCheckpointHandler()) as ckptr:
    ckptr.save(os.path.abspath(path), args=ocp.args.StandardSave(tree), force=True)


def restore_tree(path: str, abstract_tree):
  """The pytree ``save_tree`` wrote to ``path``, with the shapes and dtypes of ``abstract_tree``."""
  with ocp.Checkpointer(ocp.StandardCheckpointHandler()) as ckptr:
    return ckptr.restore(os.path.abspath(path), args=ocp.args.StandardRestore(abstract_tree))
