"""What the entry points share: flag parsing and one-line exits on the project's own errors."""

from __future__ import annotations

import os
import re
import sys
import traceback

from absl import flags, logging
import jax

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


def define_run_flags(*, step: bool = True, scenes: int | None = None, scenes_help: str = "Scenes to use.",
                     split: bool = False) -> None:
  """The flags of the commands that read one training run: ``--workdir`` (required), ``--data_dir``, and
  ``--step`` (``step``), ``--num_scenes`` (``scenes``: its default; 0 for a default of None) and ``--split``."""
  flags.DEFINE_string("workdir", None, "The training run's workdir (holds config.json and checkpoints/).")
  flags.DEFINE_string("data_dir", None, "Where the dataset is (default: the run's, in config.json).")
  if step:
    flags.DEFINE_integer("step", None, "Checkpoint step (default: the latest).")
  if scenes is not None:
    flags.DEFINE_integer("num_scenes", scenes or None, scenes_help)
  if split:
    flags.DEFINE_string("split", "test", "Dataset split: test or test_ood.")
  flags.mark_flags_as_required(["workdir"])


# Where compiled programs persist between runs unless $JAX_COMPILATION_CACHE_DIR says otherwise (empty: none),
# and its size: beyond it JAX deletes the least recently used entries (a sweep of many shapes fills no disk).
CACHE_DIR = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "nerf_vae_jax", "jax")
CACHE_MAX_BYTES = 4 * 2 ** 30


def use_compilation_cache() -> None:
  """Turns on JAX's persistent compilation cache in ``CACHE_DIR`` unless $JAX_COMPILATION_CACHE_DIR is set
  (JAX then reads it itself). Why: a relaunch of the same config (a resumed or preempted run, an evaluation, a
  sweep's repeated shapes) loads its programs instead of compiling them: the `tiny` step compiled 6 s after
  start-up instead of 19 s on the CPU; on a GPU the memory plan's probes and the step take about 90 s
  (BENCHMARKS.md, "The coarse pass without a gradient on one GPU"). JAX keys each entry by the program, its
  compiler options, the device kind and the JAX version."""
  if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    repair_cache(CACHE_DIR)
    jax.config.update("jax_compilation_cache_dir", CACHE_DIR)
    jax.config.update("jax_compilation_cache_max_size", CACHE_MAX_BYTES)


def repair_cache(path: str) -> None:
  """Gives every entry of a size-bounded compilation cache that lacks its access-time file (KEY-cache without
  KEY-atime, JAX's two suffixes) the oldest time, so that it is evicted first.

  Why: JAX writes an entry's program and its access time as two files, so a run stopped between the two (a
  Ctrl-C, a preemption) leaves an orphan, and the eviction sweep of JAX 0.10 then reads every entry's time
  before each write: one orphan made every later write fail with a FileNotFoundError warning, and the cache
  stopped growing (jax-ml/jax#39880; later JAX treats a missing time as the oldest, as here)."""
  names = set(os.listdir(path)) if os.path.isdir(path) else set()
  keys = {n.removesuffix("-cache") for n in names if n.endswith("-cache")}
  for key in keys - {n.removesuffix("-atime") for n in names}:
    with open(os.path.join(path, key + "-atime"), "wb") as f:
      f.write((0).to_bytes(8, "little"))


def run(fn, /, **kwargs) -> int:
  """Calls fn with keyword arguments, the compilation cache on (``use_compilation_cache``); the project's own
  errors (``errors.UserError``: bad input whose message says what to do) are one line on stderr and exit
  code 1. Any other exception keeps its traceback."""
  logging.set_verbosity(logging.WARNING)  # orbax logs every file it renames at INFO
  use_compilation_cache()
  try:
    fn(**kwargs)
  except errors.UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


def host_devices(cores: int | None = None, batch: int = 8) -> int:
  """Host devices to split a CPU into: one per core (default: this process's cores), rounded down to a
  power of two that divides ``batch`` (the tiny config's global batch of 8 scenes must divide by the device
  count). On 2 cores, 2 devices step fastest (BENCHMARKS.md, "make demo on the CPU")."""
  if cores is None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
  n = 1
  while n * 2 <= cores and batch % (n * 2) == 0:
    n *= 2
  return n
