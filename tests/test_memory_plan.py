"""The memory plan (two probe compiles, extrapolated) against full compiles, and the peaks MFU divides by."""

import functools

import pytest

from conftest import small_config
from nerf_vae_jax.benchmarks import peaks
from nerf_vae_jax.train import memory, memory_plan


def _small_config():
  """conftest's toy config for one step of 4 scenes, on the global latent (the plan does not depend on the
  latent, and its step compiles in half the time): the loop's memory test plans the same config, and finds
  the probes and the full step compiled here in the run's compilation cache."""
  c = small_config(None, 1)
  c.update_from_flattened_dict({"model.latent": "global", "model.prior": "independent", "train.batch_size": 4})
  return c


@functools.cache
def _full(m, remat):
  c = _small_config()
  c.train.microbatches, c.model.remat_chunks = m, remat
  return memory_plan.step_memory(c)["total"]


@pytest.fixture(autouse=True)
def _probe_once(monkeypatch):
  """Each test plans the same config: its probes are compiled once for the module (each compile takes seconds)."""
  monkeypatch.setattr(memory_plan, "_probe", _cached_probe)


@functools.cache
def _cached_probe_remat(remat):
  return _original_probe(_small_config(), remat)


_original_probe = memory_plan._probe
_cached_probe = lambda config, remat: _cached_probe_remat(remat)


@pytest.mark.parametrize("prefer", ["microbatches", "remat"])
def test_the_plan_chooses_the_lever_that_full_compiles_choose(prefer):
  config = _small_config()
  full = {(m, r): _full(m, r) for m, r in [(1, 0), (2, 0), (1, memory_plan.REMAT_CHUNKS)]}
  assert full[(2, 0)] < full[(1, 0)] and full[(1, 8)] < full[(1, 0)]  # both levers save memory here
  # A capacity that the config's step (a full compile) exceeds, and the preferred lever's step fits.
  lever = (2, 0) if prefer == "microbatches" else (1, 8)
  capacity = int((full[lever] + full[(1, 0)]) / 2 / 0.9)
  p = memory_plan.plan(config, 1, capacity, prefer=prefer)
  assert (p.microbatches, p.remat_chunks) == lever and p.changed
  assert p.predicted_bytes == pytest.approx(full[lever], rel=0.15), (p, full)
  assert f"config.train.microbatches={lever[0]}" in p.describe()
  planned = memory_plan.apply(config, p)
  assert (planned.train.microbatches, planned.model.remat_chunks, planned.train.batch_size) == (*lever, 4)
  assert config.train.microbatches == 1 and config.model.remat_chunks == 0  # the input is not changed


def test_the_plan_keeps_a_config_that_fits_and_names_the_numbers_when_nothing_does():
  config = _small_config()
  p = memory_plan.plan(config, 1, 100 * memory.GIB)
  assert (p.microbatches, p.remat_chunks, p.changed) == (1, 0, False) and "as it is" in p.describe()
  # Predicted from the probes at 1 and 2 scenes: the 4-scene step as a full compile measures it.
  assert p.predicted_bytes == pytest.approx(_full(1, 0), rel=0.15)
  with pytest.raises(memory.OutOfMemoryError, match=r"Nothing is predicted to fit 0\.0 MiB .* 4 scene\(s\)"):
    memory_plan.plan(config, 1, 1000)


@pytest.mark.parametrize("kind,platform,dtype,precision,expected", [
    # float32 under JAX's default precision runs as TF32 on Ampere and later; 'highest' is true float32.
    ("NVIDIA H100 80GB HBM3", "gpu", "float32", None, (494.5e12, "tf32", "H100 SXM")),
    ("NVIDIA H100 80GB HBM3", "gpu", "float32", "highest", (67e12, "fp32", "H100 SXM")),
    ("NVIDIA H100 80GB HBM3", "gpu", "bfloat16", None, (989e12, "bf16", "H100 SXM")),
    ("NVIDIA H100 PCIe", "gpu", "bfloat16", None, (756e12, "bf16", "H100 PCIe")),
    ("NVIDIA H100 NVL", "gpu", "float32", None, (417.5e12, "tf32", "H100 NVL")),
    ("NVIDIA H200", "gpu", "bfloat16", None, (989e12, "bf16", "H200 SXM")),
    ("NVIDIA A100-SXM4-80GB", "gpu", "float32", "tensorfloat32", (156e12, "tf32", "A100")),
    ("NVIDIA A100-PCIE-40GB", "gpu", "float32", "float32", (19.5e12, "fp32", "A100")),
    # TPUs: float32 as 1 (default), 3 ('high') or 6 ('highest') bfloat16 passes.
    ("TPU v4", "tpu", "float32", None, (275e12, "bf16", "TPU v4")),
    ("TPU v4", "tpu", "float32", "highest", (275e12 / 6, "bf16_6x", "TPU v4")),
    ("TPU v5 lite", "tpu", "float32", "high", (197e12 / 3, "bf16_3x", "TPU v5e")),
    ("TPU v5", "tpu", "bfloat16", None, (459e12, "bf16", "TPU v5p")),
    ("TPU v6 lite", "tpu", "bfloat16", None, (918e12, "bf16", "TPU v6e")),
])
def test_known_boards_get_the_peak_of_the_arithmetic_their_matmuls_run_at(kind, platform, dtype, precision,
                                                                          expected):
  assert peaks.peak_flops(kind, platform, dtype, precision) == pytest.approx(expected)


def test_an_unknown_board_has_no_peak_rather_than_a_wrong_one():
  assert peaks.peak_flops("NVIDIA GeForce RTX 4090", "gpu", "bfloat16") is None
  with pytest.raises(ValueError, match="float16"):
    peaks.matmul_arithmetic("float16", "gpu")
