"""Memory per device of the training step against per-device batch, micro-batches and remat.

  python -m experiments.benchmark --config=experiments/configs/shape_scenes.py:global --memory_table \
      [--batches=1,2,4,8] [--microbatches=1,2,4] [--capacity_gib=80] [--json=FILE]

Nothing runs: each setting's step is compiled on one device from abstract
shapes and XLA's memory analysis is read (``train.memory.step_bytes``), so
the table can be made for batches far beyond the machine's memory. The
temporaries (activations kept for the backward pass) grow linearly with the
scenes in one micro-batch; the arguments (parameters, Adam's two moments,
the batch) do not depend on micro-batching. ``fit`` extrapolates the
measured per-scene memory to a device of a given size.
"""

from __future__ import annotations

import functools

import jax

from nerf_vae_jax import batch as batch_lib
from nerf_vae_jax import sharding
from nerf_vae_jax.train import memory, step as step_lib, workdir as workdir_lib

REMAT_CHUNKS = 8  # ray chunks when remat is on


def step_memory(config, device=None) -> dict:
  """Per-device bytes of ``config``'s training step compiled for one device (``memory.step_bytes``)."""
  mesh = sharding.make_mesh([device or jax.devices()[0]])
  repl, batch_sh = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  model, spec = workdir_lib.make_model(config)
  tx = step_lib.make_optimizer(config.train)
  abstract = workdir_lib.abstract_state(config, model, spec)
  state = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=repl), abstract)
  batch = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=batch_sh)
           for k, v in batch_lib.for_config(config, spec.height, spec.width, config.train.batch_size).items()}
  key = jax.ShapeDtypeStruct((2,), jax.numpy.uint32, sharding=repl)
  step = jax.jit(functools.partial(step_lib.train_step, model, tx, config, devices=1),
                 in_shardings=(repl, batch_sh, repl), out_shardings=(repl, repl), donate_argnums=0)
  return memory.step_bytes(step.lower(state, batch, key).compile())


def table(config, batches=(1, 2, 4), microbatches=(1, 4), remats=(False, True)) -> list[dict]:
  """One row per (per-device batch, micro-batches, remat): GiB of temporaries, arguments and total."""
  rows = []
  for b in batches:
    for m in microbatches:
      if b % m:
        continue
      for r in remats:
        c = config.copy_and_resolve_references()
        c.train.batch_size, c.train.microbatches, c.model.remat_chunks = b, m, REMAT_CHUNKS if r else 0
        used = step_memory(c)
        rows.append({"scenes_per_device": b, "microbatches": m, "remat": r,
                     **{k: used[k] / memory.GIB for k in ("temporaries", "arguments", "total")}})
        print(f"  {b} scene(s), {m} micro-batch(es), remat {'on ' if r else 'off'}: "
              f"{rows[-1]['total']:.2f} GiB", flush=True)
  return rows


def fit(rows: list[dict], capacity_gib: float, remat: bool) -> dict:
  """Scenes per micro-batch that fit ``capacity_gib``, from the measured rows' per-scene temporaries.

  Uses the rows with one micro-batch: temporaries ~ a + per_scene x scenes
  (least squares over the measured batches).
  """
  pts = [(r["scenes_per_device"], r["temporaries"], r["arguments"]) for r in rows
         if r["microbatches"] == 1 and r["remat"] == remat]
  if len(pts) < 2:
    raise ValueError("fit needs rows with one micro-batch at two or more batch sizes")
  n = len(pts)
  mx, my = sum(p[0] for p in pts) / n, sum(p[1] for p in pts) / n
  slope = sum((p[0] - mx) * (p[1] - my) for p in pts) / sum((p[0] - mx) ** 2 for p in pts)
  intercept = my - slope * mx
  arguments = max(p[2] for p in pts)  # the batch argument grows a little with it; take the largest
  return {"per_scene_gib": slope, "fixed_gib": intercept + arguments,
          "scenes_per_microbatch": int((capacity_gib - intercept - arguments) // slope)}


def run(config, batches, microbatches, capacity_gib: float) -> dict:
  """The table, and what fits a ``capacity_gib`` device with and without remat."""
  rows = table(config, batches, microbatches)
  return {"device": jax.devices()[0].device_kind, "jax_version": jax.__version__, "variant": config.variant,
          "num_rays": config.loss.num_rays, "remat_chunks_when_on": REMAT_CHUNKS, "rows": rows,
          "capacity_gib": capacity_gib, "fit": {f"remat {'on' if r else 'off'}": fit(rows, capacity_gib, r)
                                                for r in (False, True)}}


def markdown(r: dict) -> str:
  lines = [f"{r['variant']}, {r['num_rays']} rays per scene, on {r['device']} (JAX {r['jax_version']}); "
           f"GiB per device:", "",
           "| scenes per device | micro-batches | remat | temporaries | arguments | total |", "|---|---|---|---|---|---|"]
  lines += [f"| {x['scenes_per_device']} | {x['microbatches']} | {'on' if x['remat'] else 'off'} | "
            f"{x['temporaries']:.2f} | {x['arguments']:.2f} | {x['total']:.2f} |" for x in r["rows"]]
  lines.append("")
  for name, f in r["fit"].items():
    lines.append(f"{name}: {f['per_scene_gib']:.3f} GiB per scene + {f['fixed_gib']:.2f} GiB fixed: "
                 f"{f['scenes_per_microbatch']} scenes per micro-batch fit {r['capacity_gib']:.0f} GiB.")
  return "\n".join(lines)


def fit_config(config, num_devices: int, capacity: int | None, headroom: float = 0.9):
  """``config`` with the fewest micro-batches, with or without remat, whose step fits ``capacity`` bytes per device.

  Returns (config, note): the config unchanged and note None if it fits as
  it is (or the capacity is unknown). The global batch never changes, so
  neither do the results (up to float rounding). Each candidate is compiled
  and measured (``step_memory``); the 1/M scaling of the temporaries only
  picks which micro-batch counts are worth compiling. Raises
  OutOfMemoryError, with the numbers, if nothing fits.
  """
  if not capacity:
    return config, None
  per_device = config.train.batch_size // num_devices
  m0, r0 = config.train.get("microbatches", 1), config.model.get("remat_chunks", 0)
  limit, tried, cache = headroom * capacity, [], {}

  def measure(m, remat):
    if (m, remat) not in cache:
      c = config.copy_and_resolve_references()
      c.train.batch_size, c.train.microbatches, c.model.remat_chunks = per_device, m, remat
      used = step_memory(c)["total"]
      tried.append(f"{m} micro-batch(es), remat chunks {remat or 'off'}: {used / memory.GIB:.2f} GiB")
      cache[(m, remat)] = used
    return cache[(m, remat)]

  if measure(m0, r0) <= limit:
    return config, None
  # Remat first on the CPU, where it was faster than no remat and micro-batches 2-3x slower (BENCHMARKS.md);
  # micro-batches first elsewhere, as they add no FLOPs.
  order = (r0 or REMAT_CHUNKS, r0) if jax.devices()[0].platform == "cpu" else (r0, r0 or REMAT_CHUNKS)
  for remat in dict.fromkeys(order):
    base = measure(m0, remat)
    # Temporaries shrink as 1/M: compile only the two smallest counts predicted to fit (a bound, not
    # an exact figure: the fixed part is taken as zero).
    candidates = [m0] + [d for d in range(m0 + 1, per_device + 1) if per_device % d == 0 and base * m0 / d <= limit][:2]
    for m in candidates:
      if measure(m, remat) <= limit:
        c = config.copy_and_resolve_references()
        c.train.microbatches, c.model.remat_chunks = m, remat
        return c, (f"The config's step does not fit {capacity / memory.GIB:.1f} GiB per device: measured with "
                   f"config.train.microbatches={m} and config.model.remat_chunks={remat} (the same global batch). "
                   f"Tried: " + "; ".join(tried) + ".")
  raise memory.OutOfMemoryError(f"Nothing fits {capacity / memory.GIB:.1f} GiB per device with "
                                f"{per_device} scene(s) per device. Tried: " + "; ".join(tried) +
                                ". Lower config.train.batch_size or config.loss.num_rays.")
