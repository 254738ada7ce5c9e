"""Memory per device of the training step against per-device batch, micro-batches and remat.

  python -m experiments.benchmark --config=experiments/configs/shape_scenes.py:global --memory_table \
      [--batches=1,2,4,8] [--microbatches=1,2,4] [--capacity_gib=80] [--json=FILE]

Nothing runs: each setting's step is compiled on one device from abstract
shapes and XLA's memory analysis is read (``train.memory.step_bytes``), so
the table can be made for batches far beyond the machine's memory (``train.memory_plan.step_memory``). The
temporaries (activations kept for the backward pass) grow linearly with the
scenes in one micro-batch; the arguments (parameters, Adam's two moments,
the batch) do not depend on micro-batching. ``fit`` extrapolates the
measured per-scene memory to a device of a given size.
"""

from __future__ import annotations

import jax

from nerf_vae_jax.train import memory
from nerf_vae_jax.train.memory_plan import REMAT_CHUNKS, step_memory


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
