"""What the evaluation commands share: clear exits on bad input."""

from __future__ import annotations

import sys

from nerf_vae_jax import checkpointing, trainer
from nerf_vae_jax.data import source

# Errors whose messages say what to do: printed without a traceback, exit code 1.
USER_ERRORS = (checkpointing.NoCheckpointError, trainer.CheckpointMismatchError, source.DatasetError,
               FileNotFoundError, ValueError)


def run(fn, *args) -> int:
  try:
    fn(*args)
  except USER_ERRORS as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0
