"""Data parallelism: the mesh, the batch-size check, and global batches from per-process rows.

The tests run on 2 host devices (conftest sets XLA_FLAGS before JAX starts)."""

import jax
import numpy as np
import pytest

from nerf_vae_jax import sharding


def test_mesh_is_one_auto_data_axis_over_every_device():
  mesh = sharding.make_mesh()
  assert mesh.axis_names == ("data",) and mesh.size == jax.device_count() == 2
  assert mesh.axis_types == (jax.sharding.AxisType.Auto,)


def test_batch_size_must_divide_by_the_device_count():
  assert sharding.check_batch_size(4) == 4  # one process: its share is the global batch
  with pytest.raises(ValueError, match="not divisible by the 2 devices; use a multiple of 2"):
    sharding.check_batch_size(3)


def test_global_batch_splits_rows_over_devices_and_keeps_values():
  mesh = sharding.make_mesh()
  local = {"x": np.arange(8 * 3, dtype=np.float32).reshape(8, 3), "m": np.arange(8) % 2 == 0}
  out = sharding.global_batch(local, mesh)
  for k in local:
    np.testing.assert_array_equal(np.asarray(out[k]), local[k])
    assert out[k].sharding == sharding.batch_sharding(mesh)
    shards = sorted(out[k].addressable_shards, key=lambda s: s.index[0].start)
    assert [s.data.shape[0] for s in shards] == [4, 4]  # rows 0-3 on one device, 4-7 on the other
    np.testing.assert_array_equal(np.asarray(shards[1].data), local[k][4:])


def test_host_devices_one_per_core_dividing_the_batch():
  from experiments import common
  assert [common.host_devices(c) for c in (1, 2, 3, 4, 6, 8, 16)] == [1, 2, 2, 4, 4, 8, 8]
  assert common.host_devices(16, batch=12) == 4 and common.host_devices(2, batch=3) == 1
  assert 8 % common.host_devices() == 0 and common.host_devices() >= 1
