"""Data parallelism: one mesh axis ``data`` over every device of every process.

Parameters and optimizer state are replicated; batches are split along their
leading (scene) axis. Each process loads only its own part of the global batch
and ``jax.make_array_from_process_local_data`` stitches the parts together.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from nerf_vae_jax import errors


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-D mesh named ``data`` over ``devices`` (default: all devices).

  The axis type is Auto: ``jax.make_mesh`` defaults to Explicit axes, which
  would put shardings into array types; plain data parallelism under jit needs
  none of that.
  """
  devices = list(devices or jax.devices())
  return jax.make_mesh((len(devices),), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=devices)


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def check_batch_size(global_batch: int) -> int:
  """The per-process batch; a clear error if the global batch does not split evenly."""
  devices, processes = jax.device_count(), jax.process_count()
  if global_batch % devices:
    raise errors.ConfigError(f"config.train.batch_size={global_batch} is not divisible by the {devices} devices; "
                     f"use a multiple of {devices} (the batch size is global, in scenes).")
  return global_batch // processes


def global_batch(local: dict, mesh) -> dict:
  """Per-process numpy arrays -> global jax.Arrays sharded on ``data``."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local.items()}
