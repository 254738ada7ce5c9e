"""Dense matmul peaks (FLOP/s) per board and per the precision the matmuls really run at.

MFU divides by the peak of the arithmetic the step's matmuls use, which is
not always their dtype: under JAX's default precision, float32 matmuls run
as TF32 on NVIDIA tensor cores (Ampere and later) and as one bfloat16 pass
on TPUs; ``jax_default_matmul_precision='highest'`` makes them true float32
on GPUs and six bfloat16 passes on TPUs (docs.jax.dev, "Matmul precision").
Figures are the vendors' data sheets, dense (without 2:4 sparsity).
"""

from __future__ import annotations

TERA = 1e12

# (device_kind prefix, board): peaks by arithmetic. More specific prefixes first: "NVIDIA H100 PCIe" and
# "NVIDIA H100 NVL" before "NVIDIA H100" (the SXM part reports "NVIDIA H100 80GB HBM3").
BOARDS = (
    ("NVIDIA H100 PCIe", "H100 PCIe", {"bf16": 756 * TERA, "tf32": 378 * TERA, "fp32": 51 * TERA}),
    ("NVIDIA H100 NVL", "H100 NVL", {"bf16": 835 * TERA, "tf32": 417.5 * TERA, "fp32": 60 * TERA}),
    ("NVIDIA H100", "H100 SXM", {"bf16": 989 * TERA, "tf32": 494.5 * TERA, "fp32": 67 * TERA}),
    ("NVIDIA H200 NVL", "H200 NVL", {"bf16": 835 * TERA, "tf32": 417.5 * TERA, "fp32": 60 * TERA}),
    ("NVIDIA H200", "H200 SXM", {"bf16": 989 * TERA, "tf32": 494.5 * TERA, "fp32": 67 * TERA}),
    ("NVIDIA A100", "A100", {"bf16": 312 * TERA, "tf32": 156 * TERA, "fp32": 19.5 * TERA}),
    ("TPU v4", "TPU v4", {"bf16": 275 * TERA}),
    ("TPU v5 lite", "TPU v5e", {"bf16": 197 * TERA}),
    ("TPU v5", "TPU v5p", {"bf16": 459 * TERA}),
    ("TPU v6 lite", "TPU v6e", {"bf16": 918 * TERA}),
)

# TPUs compute float32 matmuls as 1, 3 or 6 bfloat16 passes.
_TPU_PASSES = {"bf16": 1, "bf16_3x": 3, "bf16_6x": 6}


def matmul_arithmetic(dtype: str, platform: str, default_precision: str | None = None) -> str:
  """What a matmul of ``dtype`` inputs runs as: "bf16", "tf32", "fp32", "bf16_3x" or "bf16_6x".

  ``default_precision``: ``jax.config.jax_default_matmul_precision`` (None: JAX's default).
  """
  if dtype == "bfloat16":
    return "bf16"
  if dtype != "float32":
    raise ValueError(f"matmul dtype {dtype!r}: expected 'float32' or 'bfloat16'")
  p = (default_precision or "default").lower()
  if p in ("bfloat16", "fastest"):
    return "bf16"
  if platform == "tpu":
    return {"default": "bf16", "high": "bf16_3x", "bfloat16_3x": "bf16_3x"}.get(p, "bf16_6x")
  if platform == "gpu" or platform == "cuda":
    return "fp32" if p in ("highest", "float32") else "tf32"
  return "fp32"


def board(device_kind: str) -> tuple[str, dict] | None:
  """(board name, peaks by arithmetic) of a known ``device_kind``, or None."""
  for prefix, name, peaks in BOARDS:
    if device_kind.startswith(prefix):
      return name, peaks
  return None


def peak_flops(device_kind: str, platform: str, dtype: str, default_precision: str | None = None
               ) -> tuple[float, str, str] | None:
  """(peak FLOP/s, arithmetic, board) for the step's matmuls on one device, or None for an unknown board."""
  found = board(device_kind)
  if found is None:
    return None
  name, peaks = found
  arithmetic = matmul_arithmetic(dtype, platform, default_precision)
  if arithmetic in _TPU_PASSES and name.startswith("TPU"):
    return peaks["bf16"] / _TPU_PASSES[arithmetic], arithmetic, name
  return peaks[arithmetic], arithmetic, name
