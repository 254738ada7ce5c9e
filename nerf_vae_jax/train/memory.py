"""Memory you can plan: the compiled training step's memory per device, against what the device has.

XLA's memory analysis of the compiled step gives, per device, the bytes of
its arguments (parameters, optimizer state, the batch shard), its outputs,
and its temporaries (activations kept for the backward pass, mostly); with
the state donated, outputs alias arguments. The loop prints this before the
first step and stops at once, with the numbers and the fixes, if it cannot fit.
"""

from __future__ import annotations

import os

import jax

from nerf_vae_jax import errors

GIB = 2 ** 30


class OutOfMemoryError(errors.UserError):
  """The training step would not fit the device's memory."""


def step_bytes(compiled) -> dict:
  """Per-device bytes of a compiled step: arguments, outputs, temporaries and their total."""
  m = compiled.memory_analysis()
  total = m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes
  return {"arguments": m.argument_size_in_bytes, "outputs": m.output_size_in_bytes,
          "aliased": m.alias_size_in_bytes, "temporaries": m.temp_size_in_bytes, "total": total}


def device_capacity(limit_gib: float | None = None) -> int | None:
  """Bytes one device can hold: ``limit_gib`` if given, else what the device reports.

  CPU devices report nothing: they share the host's RAM, so each gets an
  equal share of it (None where the RAM size is unknown).
  """
  if limit_gib:
    return int(limit_gib * GIB)
  device = jax.local_devices()[0]
  stats = device.memory_stats() or {}
  if "bytes_limit" in stats:
    return stats["bytes_limit"]
  if device.platform == "cpu" and hasattr(os, "sysconf"):
    try:
      return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // jax.local_device_count()
    except (ValueError, OSError):
      return None
  return None


def report(used: dict, capacity: int | None, config, num_devices: int | None = None) -> str:
  """One line for the log; raises OutOfMemoryError, naming the fixes, if ``used`` exceeds ``capacity``.

  ``num_devices``: the devices the global batch is split over (default: all).
  """
  num_devices = num_devices or jax.device_count()
  per_device = config.train.batch_size // num_devices
  m, remat = config.train.get("microbatches", 1), config.model.get("remat_chunks", 0)
  cap = f"{capacity / GIB:.2f} GiB" if capacity else "unknown"
  line = (f"Training step memory per device: {used['total'] / GIB:.2f} GiB (temporaries "
          f"{used['temporaries'] / GIB:.2f}, arguments {used['arguments'] / GIB:.2f}) for {per_device} scene(s) x "
          f"{config.loss.num_rays} rays per device in {m} micro-batch(es), remat chunks {remat or 'off'}; "
          f"device capacity {cap}.")
  if capacity and used["total"] > capacity:
    need = used["total"] / capacity
    fixes = [f"config.train.microbatches={_divisor_at_least(per_device, m * need)} (now {m}: the same global "
             f"batch and results, activations split into sequential slices)"]
    if not remat:
      fixes.append("config.model.remat_chunks=8 (recomputes the scene function in the backward pass, 8 ray "
                   "chunks at a time)")
    if config.model.get("dtype", "float32") == "float32":
      fixes.append("config.model.dtype=bfloat16")
    fixes.append(f"a smaller config.train.batch_size (now {config.train.batch_size} over {num_devices} "
                 f"devices) or config.loss.num_rays (now {config.loss.num_rays}), or more devices")
    raise OutOfMemoryError(f"{line} It does not fit ({need:.1f}x the capacity). Activations grow with scenes x "
                           f"rays x samples per micro-batch. Fixes, in order: " + "; ".join(fixes) + ".")
  return line


def _divisor_at_least(n: int, target: float) -> int:
  """The smallest divisor of n that is >= target (n itself if none)."""
  return next((d for d in range(1, n + 1) if n % d == 0 and d >= target), n)
