"""What the entry points share: flag parsing and one-line exits on the project's own errors."""

from __future__ import annotations

import re
import sys
import traceback

from absl import flags, logging

from nerf_vae_jax import errors


def parse_flags(argv):
  """absl parsing, with one clear line for a bad ``--config`` (a wrong variant, a value the config file
  rejects) or an override of a field the config does not have."""
  try:
    return flags.FLAGS(argv)
  except flags.IllegalFlagValueError as e:
    # ml-collections wraps the config file's own error in tracebacks; its last line is the message.
    lines = [line for line in str(e).splitlines() if line.strip()]
    sys.exit("error: " + re.sub(r"^\w+Error: ", "", lines[-1] if lines else str(e)))
  except AttributeError as e:
    field = _unknown_field(e)
    if field is None:
      raise
    overrides = " ".join(a for a in argv if a.startswith("--config."))
    sys.exit(f"error: unknown config field {field!r} in: {overrides}\n"
             f"The fields are listed, with what each does, in the config file.")


def _unknown_field(e: AttributeError):
  """The missing field's name when ml-collections' override lookup raised ``e``, else None (a bug elsewhere)."""
  frames = traceback.extract_tb(e.__traceback__)
  if not any("ml_collections" in f.filename and f.filename.endswith("config_path.py") for f in frames):
    return None
  return str(e).strip("\"'")


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
