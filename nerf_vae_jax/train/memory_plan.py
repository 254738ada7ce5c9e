"""The memory plan: which levers (micro-batches, remat) the step needs, decided before the real compile.

Compiling the full step to learn whether it fits can take minutes on a GPU
when it does not: XLA's own rematerialization pass works hard at a program
that cannot fit, and each rejected lever meant another full compile. The plan
compiles the step instead for 1 and 2 scenes on one device, from abstract
shapes, with XLA's rematerialization pass off (it would hide the per-scene
growth the plan extrapolates). Memory is affine in the scenes per
micro-batch s and the scenes per device P (``memory.step_bytes`` parts):

  total(P, s) = (non-temporaries at 1 scene) + (P - 1) x (their growth per scene: the batch shard)
              + (temporaries at 1 scene) + (s - 1) x (their growth per scene: activations)
              + (one copy of the parameters: the gradient accumulator, when micro-batched)

Then the real step is compiled once, with the levers chosen. The global batch
never changes, so neither do the results (up to float rounding).
"""

from __future__ import annotations

import dataclasses
import functools

import jax

from nerf_vae_jax import batching
from nerf_vae_jax import sharding
from nerf_vae_jax.train import memory, update, run_dir

REMAT_CHUNKS = 8  # ray chunks when the plan turns remat on
# The probes' compiler options: without XLA's rematerialization pass, memory grows with the scenes as it is.
# Otherwise they compile as the real step does: probes compiled without autotuning the GPU's matmul kernels
# (xla_gpu_autotune_level=0, from edc05be to 5887057) predicted 17-41% less than the real steps compiled on an
# H200 in bfloat16 (other kernels, other fusions: BENCHMARKS.md, "The coarse pass without a gradient on one
# GPU"); with autotuning (48d27e4) the prediction was within 1%.
PROBE_OPTIONS = {"xla_disable_hlo_passes": "rematerialization"}


def compile_step(config, device=None, compiler_options=None):
  """``config``'s training step for ``config.train.batch_size`` scenes on one device (default: the first),
  compiled from abstract shapes (nothing is allocated or run)."""
  mesh = sharding.make_mesh([device or jax.devices()[0]])
  repl, batch_sh = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  model, spec = run_dir.make_model(config)
  tx = update.make_optimizer(config.train)
  abstract = run_dir.abstract_state(config, model, spec)
  state = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=repl), abstract)
  batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=batch_sh)
           for k, v in batching.for_config(config, spec.height, spec.width, config.train.batch_size).items()}
  key = jax.ShapeDtypeStruct((2,), jax.numpy.uint32, sharding=repl)
  step = jax.jit(functools.partial(update.train_step, model, tx, config, devices=1),
                 in_shardings=(repl, batch_sh, repl), out_shardings=(repl, repl), donate_argnums=0)
  return step.lower(state, batch, key).compile(compiler_options=compiler_options)


def step_memory(config, device=None, compiler_options=None) -> dict:
  """``memory.step_bytes`` of ``compile_step(config, ...)``."""
  return memory.step_bytes(compile_step(config, device, compiler_options))


def _size(n: float) -> str:
  return f"{n / memory.GIB:.2f} GiB" if n >= 0.1 * memory.GIB else f"{n / 2 ** 20:.1f} MiB"


@dataclasses.dataclass(frozen=True)
class Probe:
  """Bytes per device at 1 and 2 scenes, one micro-batch, remat on or off."""
  one: dict
  two: dict

  def predict(self, per_device: int, microbatches: int) -> int:
    rest = lambda m: m["total"] - m["temporaries"]
    per_scene_rest, per_scene_temp = rest(self.two) - rest(self.one), self.two["temporaries"] - self.one["temporaries"]
    # Parameters, Adam's two moments and the key: the arguments that do not grow with the batch.
    params = max(self.one["arguments"] - per_scene_rest, 0) // 3
    return int(rest(self.one) + (per_device - 1) * per_scene_rest + self.one["temporaries"]
               + (per_device / microbatches - 1) * per_scene_temp + (params if microbatches > 1 else 0))


@dataclasses.dataclass(frozen=True)
class Plan:
  microbatches: int
  remat_chunks: int
  predicted_bytes: int
  capacity: int
  changed: bool  # whether the levers differ from the config's
  tried: tuple  # one line per (micro-batches, remat) predicted

  def describe(self) -> str:
    head = (f"Memory plan: {self.microbatches} micro-batch(es), remat chunks {self.remat_chunks or 'off'}: "
            f"{_size(self.predicted_bytes)} predicted per device of {_size(self.capacity)}")
    if not self.changed:
      return head + " (the config as it is)."
    return (head + f" (set config.train.microbatches={self.microbatches} config.model.remat_chunks="
            f"{self.remat_chunks} to skip the plan; the same global batch). Predicted: " + "; ".join(self.tried) + ".")


def _probe(config, remat: int) -> Probe:
  out = []
  for scenes in (1, 2):
    c = config.copy_and_resolve_references()
    c.train.batch_size, c.train.microbatches, c.model.remat_chunks = scenes, 1, remat
    out.append(step_memory(c, compiler_options=PROBE_OPTIONS))
  return Probe(*out)


def plan(config, num_devices: int, capacity: int, headroom: float = 0.9, prefer: str | None = None) -> Plan:
  """The fewest micro-batches (with or without remat) whose step is predicted to fit ``headroom x capacity``.

  ``prefer``: which lever to try first, "remat" or "microbatches" (default: remat on the CPU, where it was
  faster than micro-batches (BENCHMARKS.md); micro-batches elsewhere, as they add no FLOPs). Raises
  ``memory.OutOfMemoryError`` with the predictions if nothing fits.
  """
  per_device = config.train.batch_size // num_devices
  m0, r0 = config.train.get("microbatches", 1), config.model.get("remat_chunks", 0)
  limit, tried, probes, seen = headroom * capacity, [], {}, {}
  prefer = prefer or ("remat" if jax.devices()[0].platform == "cpu" else "microbatches")

  def predict(m, remat):
    if (m, remat) not in seen:
      if remat not in probes:
        probes[remat] = _probe(config, remat)
      seen[(m, remat)] = probes[remat].predict(per_device, m)
      tried.append(f"{m} micro-batch(es), remat chunks {remat or 'off'}: {_size(seen[(m, remat)])}")
    return seen[(m, remat)]

  used = predict(m0, r0)
  if used <= limit:
    return Plan(m0, r0, used, capacity, False, tuple(tried))
  remats = (r0 or REMAT_CHUNKS, r0) if prefer == "remat" else (r0, r0 or REMAT_CHUNKS)
  for remat in dict.fromkeys(remats):
    for m in (d for d in range(m0, per_device + 1) if per_device % d == 0):
      used = predict(m, remat)
      if used <= limit:
        return Plan(m, remat, used, capacity, True, tuple(tried))
  raise memory.OutOfMemoryError(
      f"Nothing is predicted to fit {_size(capacity)} per device ({headroom:.0%} of it used) with "
      f"{per_device} scene(s) per device. Predicted: " + "; ".join(tried) +
      ". Lower config.train.batch_size or config.loss.num_rays, or use config.model.dtype=bfloat16.")


def apply(config, p: Plan):
  """``config`` with the plan's levers (a copy; the input is not changed)."""
  c = config.copy_and_resolve_references()
  c.train.microbatches, c.model.remat_chunks = p.microbatches, p.remat_chunks
  return c


def needs_plan(config) -> bool:
  """Whether to plan before compiling: on accelerators, or wherever a memory limit is set. CPU devices share
  the host's RAM, have no rematerialization pass to wait for, and compile the real step fast."""
  return bool(config.train.get("memory_limit_gib")) or jax.devices()[0].platform != "cpu"
