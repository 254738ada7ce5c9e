"""What the entry points share: flag parsing and one-line exits on the project's own errors."""

from __future__ import annotations

import sys

from absl import flags, logging

from nerf_vae_jax import errors


def parse_flags(argv):
  """absl parsing, with a clear message for an unknown config field."""
  try:
    return flags.FLAGS(argv)
  except AttributeError as e:
    overrides = " ".join(a for a in argv if a.startswith("--config."))
    sys.exit(f"error: unknown config field {e} in: {overrides}\n"
             f"The fields are listed, with what each does, in the config file.")


def run(fn, *args, **kwargs) -> int:
  """Calls fn; the project's own errors (``errors.UserError``: bad input whose
  message says what to do) are one line on stderr and exit code 1. Any other
  exception keeps its traceback."""
  logging.set_verbosity(logging.WARNING)  # orbax logs every file it renames at INFO
  try:
    fn(*args, **kwargs)
  except errors.UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0
