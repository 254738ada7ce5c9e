"""What the entry points share: flag parsing and clear exits on bad input."""

from __future__ import annotations

import sys

from absl import flags


def parse_flags(argv):
  """absl parsing, with a clear message for an unknown config field."""
  try:
    return flags.FLAGS(argv)
  except AttributeError as e:
    overrides = " ".join(a for a in argv if a.startswith("--config."))
    sys.exit(f"error: unknown config field {e} in: {overrides}\n"
             f"The fields are listed, with what each does, in the config file.")


def run(fn, *args) -> int:
  """Calls fn(*args); errors whose messages say what to do are printed without a traceback (exit code 1)."""
  from nerf_vae_jax import checkpointing, trainer
  from nerf_vae_jax.data import source
  user_errors = (checkpointing.NoCheckpointError, trainer.CheckpointMismatchError, source.DatasetError,
                 trainer.NonFiniteLossError, FileNotFoundError, ValueError)
  try:
    fn(*args)
  except user_errors as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0
