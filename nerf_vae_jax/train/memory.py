"""Memory you can plan: the compiled training step's memory per device, against what the device has.

XLA's memory analysis of the compiled step gives, per device, the bytes of
its arguments (parameters, optimizer state, the batch shard), its outputs,
and its temporaries (activations kept for the backward pass, mostly); with
the state donated, outputs alias arguments. The loop prints this before the
first step and stops at once, with the numbers and the fixes, if it cannot fit.
"""

from __future__ import annotations

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
  """Bytes one device can hold: ``limit_gib`` if given, else what the device reports (None on the CPU)."""
  if limit_gib:
    return int(limit_gib * GIB)
  stats = jax.local_devices()[0].memory_stats() or {}
  return stats.get("bytes_limit")


def report(used: dict, capacity: int | None, config) -> str:
  """One line for the log; raises OutOfMemoryError, naming the fixes, if ``used`` exceeds ``capacity``."""
  per_device = config.train.batch_size // jax.device_count()
  cap = f"{capacity / GIB:.2f} GiB" if capacity else "unknown (no device limit on the CPU)"
  line = (f"Training step memory per device: {used['total'] / GIB:.2f} GiB (temporaries "
          f"{used['temporaries'] / GIB:.2f}, arguments {used['arguments'] / GIB:.2f}) for {per_device} scene(s) x "
          f"{config.loss.num_rays} rays per device; device capacity {cap}.")
  if capacity and used["total"] > capacity:
    scale = capacity / used["total"]
    raise OutOfMemoryError(
        f"{line} It does not fit. Activations grow with scenes x rays x samples per device: lower "
        f"config.train.batch_size (now {config.train.batch_size} over {jax.device_count()} devices; about "
        f"{max(int(per_device * scale * 0.9), 0)} scene(s) per device would fit), or config.loss.num_rays "
        f"(now {config.loss.num_rays}), or use config.model.dtype=bfloat16, or more devices.")
  return line
