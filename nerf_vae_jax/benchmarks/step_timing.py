"""Training-step benchmark: time, throughput, model-FLOP utilisation, rendering, input pipeline.

  python -m experiments.benchmark --config=experiments/configs/shape_scenes.py:global [--config.x=y]
      [--json=FILE] [--steps=20]

(the library behind ``experiments.benchmark``)

After a warm-up, each training step is timed with its result blocked on
(median of --steps). The step runs on synthetic batches of the config's shapes
(the timing does not depend on pixel values), once on 1 device and once on all
local devices when there are several. MFU = model FLOPs / step time / peak,
with the model FLOPs counted from the architecture (nerf_vae_jax/flops.py)
and cross-checked against XLA's cost analyses (BENCHMARKS.md, "What the FLOP
counts count"): of the step compiled for the CPU (every matmul a counted
dot: the reference the formula is tested against), of the step compiled for
this device (on GPUs it misses the matmuls handed to library calls), and of
the lowered step (before optimisation: it also counts work that XLA then
removes). The peak is, on the CPU, a
float32 matmul shaped like the scene function's layers timed in this run
(peak_source "measured") and, on GPU/TPU, the board's published dense peak
for the arithmetic the matmuls really run at (``peaks.py``: TF32 for float32
under JAX's default precision on NVIDIA GPUs; peak_source "spec"). The input pipeline is timed on the
config's dataset, or on `64px_mini`/`tiny` (same scene size) when that is not
built, with --pipeline_workers grain workers.
"""

from __future__ import annotations

import functools
import statistics
import time

import jax
import numpy as np

from nerf_vae_jax import batching
from nerf_vae_jax import flops, sharding
from nerf_vae_jax.benchmarks import data_throughput, hlo_traffic, peaks, profile
from nerf_vae_jax.data import build, pipeline
from nerf_vae_jax.evaluation import orbits
from nerf_vae_jax.models import nerf_vae
from nerf_vae_jax.scenes import specs
from nerf_vae_jax.train import memory, memory_plan, update, run_dir

_T0 = time.perf_counter()


def _say(what: str) -> None:
  """Progress on stdout: each phase compiles, and a GPU compile of the full step takes a minute or more."""
  print(f"[benchmark {time.perf_counter() - _T0:6.0f} s] {what}", flush=True)


def _median_time(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def measured_matmul_peak(rows: int, width: int, repeats: int = 10) -> float:
  """Best FLOP/s of a float32 [rows, width] x [width, width] matmul (the scene function's layer shape, or wider)."""
  x = jax.random.normal(jax.random.PRNGKey(0), (rows, width))
  w = jax.random.normal(jax.random.PRNGKey(1), (width, width))
  f = jax.jit(lambda x, w: x @ w)
  f(x, w).block_until_ready()
  best = min(_median_time(lambda: f(x, w).block_until_ready(), 1) for _ in range(repeats))  # a peak: the best run
  return 2 * rows * width * width / best


def time_train_step(config, model, spec, devices, steps: int, warmup: int, profile_dir: str | None = None) -> dict:
  """Median step time on ``devices`` (global batch from the config), XLA's FLOPs, recompilations; with
  ``profile_dir``, also the op breakdown of 3 more steps (``profile.py``) and the bytes each op of the compiled
  step moves (``hlo_traffic.py``)."""
  mesh = sharding.make_mesh(devices)
  repl, batch_sh = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  tx = update.make_optimizer(config.train)
  key = jax.random.PRNGKey(0)
  state = jax.jit(functools.partial(update.init_state, model, tx), out_shardings=repl)(
      batching.example(batching.for_config(config, spec.height, spec.width)), key)
  batch = jax.device_put(batching.synthetic(spec, config.data, config.train.batch_size), batch_sh)
  traces = []

  def step(state, batch, key):
    traces.append(1)  # runs only when jit traces (compiles) the step
    return update.train_step(model, tx, config, state, batch, key, devices=len(devices))

  step_fn = jax.jit(step, in_shardings=(repl, batch_sh, repl), out_shardings=(repl, repl), donate_argnums=0)
  lowered = step_fn.lower(state, batch, key)
  # The lowered program is the whole (unpartitioned) step; the compiled one is one device's.
  lowered_flops = (lowered.cost_analysis() or {}).get("flops")
  compiled = lowered.compile()
  step_memory = memory.step_bytes(compiled)  # per device, from XLA's memory analysis
  # Stops here, with the fixes, rather than in XLA's allocator.
  print(memory.report(step_memory, memory.device_capacity(config.train.get("memory_limit_gib")), config,
                      len(devices)), flush=True)
  xla_flops = compiled.cost_analysis().get("flops")
  xla_flops = xla_flops * len(devices) if xla_flops else None  # one device's program, scaled to the mesh
  for _ in range(warmup):
    state, metrics = step_fn(state, batch, key)
  jax.block_until_ready(metrics)
  compiles_after_warmup = len(traces)
  times = []
  for _ in range(steps):
    t0 = time.perf_counter()
    state, metrics = step_fn(state, batch, key)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - t0)
  if len(traces) != compiles_after_warmup:
    raise AssertionError(f"The training step recompiled after the warm-up ({len(traces)} traces).")
  breakdown = traffic = None
  if profile_dir:
    traffic = hlo_traffic.traffic(compiled.as_text())
    traffic["bytes_per_s"] = traffic["total_bytes"] / statistics.median(times)
    box = {"state": state}

    def run_once():
      box["state"], m = step_fn(box["state"], batch, key)
      jax.block_until_ready(m)

    _say("profiling 3 steps ...")
    breakdown = profile.op_breakdown(profile.trace_steps(run_once, 3, profile_dir), 3)
    state = box["state"]
  stats = devices[0].memory_stats() or {}
  return {"train_step_s": statistics.median(times), "xla_flops_per_step": xla_flops,
          "xla_lowered_flops_per_step": lowered_flops, "op_breakdown": breakdown, "hlo_traffic": traffic,
          "recompilations_after_warmup": len(traces) - compiles_after_warmup,
          "peak_memory_bytes": stats.get("peak_bytes_in_use"), "step_memory_bytes": step_memory["total"],
          "params": state["params"]}


def time_render(model, params, spec, size: int, chunk: int, repeats: int = 10) -> float:
  """Seconds to render one size x size view from a latent (deterministic fine pass)."""
  intr, c2w = orbits.orbit_cameras(spec, 1)
  intr = intr * np.float32(size / spec.width)  # same field of view at this size
  z = nerf_vae.sample_prior(model, params, jax.random.PRNGKey(0), 1)
  f = jax.jit(lambda p, z: nerf_vae.render_views(model, p, z, intr[None], c2w[None], size, size, chunk)["rgb"])
  f(params, z).block_until_ready()
  return _median_time(lambda: f(params, z).block_until_ready(), repeats)


def time_pipeline(config, workers: int, batches: int) -> tuple[float, str]:
  """Scenes/s of the training input pipeline, and the dataset it read."""
  data_dir = config.data.data_dir or build.default_data_dir()
  name = config.data.name
  if not build.is_built(name, data_dir):  # same scene size, few scenes
    name = "shape_scenes/64px_mini" if specs.parse_name(name).height == 64 else "shape_scenes/tiny"
    if not build.is_built(name, data_dir):
      print(f"Building {name} in {data_dir} for the pipeline measurement ...", flush=True)
      build.build(name, data_dir)
  views = pipeline.ViewSampling(config.data.min_context, config.data.max_context, config.data.num_targets)
  return data_throughput.loader_scenes_per_s(name, data_dir, workers, config.train.batch_size, batches, views), name


def benchmark(config, overrides=(), steps=20, warmup=3, pipeline_workers=2, pipeline_batches=40,
              render_sizes=(), profile_dir=None, step_only=False) -> dict:
  """Times the step on 1 and all local devices (``profile_dir``: also profiles the all-device step).
  ``step_only``: only the step on all local devices, without the CPU FLOP reference (a compile of the whole
  step for the host), the renderer or the pipeline: what fits a short lease of an accelerator."""
  model, spec = run_dir.make_model(config)
  dev = jax.local_devices()
  counts = [len(dev)] if step_only else [1] + ([len(dev)] if len(dev) > 1 else [])
  model_flops = flops.train_step_flops(model, config.train.batch_size, config.data.max_context, spec.height,
                                       spec.width, config.loss.num_rays, coarse_grad=bool(config.loss.coarse_weight))
  points = config.train.batch_size * config.loss.num_rays * (model.num_coarse + model.num_fine)
  arithmetic, board = "fp32", "host CPU"
  if dev[0].platform == "cpu":
    # At least 256 wide: a toy model's narrow layers would measure a peak below what the CPU can do.
    peak, peak_source = measured_matmul_peak(min(points, 1 << 17), max(model.mlp_width, 256)), "measured"
  else:
    found = peaks.peak_flops(dev[0].device_kind, dev[0].platform, config.model.dtype,
                             jax.config.jax_default_matmul_precision)
    peak, arithmetic, board = found if found else (None, None, None)
    peak_source = "spec" if found else "unknown board"
  cpu_reference = dev[0].platform != "cpu" and not step_only
  if cpu_reference:  # the step compiled for the host CPU: its count includes every matmul
    _say("compiling the step for the host CPU (the FLOP count's reference) ...")
    cpu_flops = memory_plan.compile_step(config, jax.devices("cpu")[0]).cost_analysis()["flops"]
  out = {"device": {"kind": dev[0].device_kind, "platform": dev[0].platform, "count": len(dev)},
         "jax_version": jax.__version__, "config": {"variant": config.variant, "overrides": list(overrides)},
         "model_flops_per_step": model_flops["train_step"], "model_flops_parts": model_flops,
         "peak_source": peak_source, "matmul_arithmetic": arithmetic, "board": board}
  if cpu_reference:
    out.update(xla_cpu_flops_per_step=cpu_flops, model_over_xla_cpu_flops=model_flops["train_step"] / cpu_flops)
  runs = {}
  for n in counts:
    # Levers decided before the one real compile, where the trainer decides them (memory_plan.needs_plan).
    run_config, note = config, None
    capacity = memory.device_capacity(config.train.get("memory_limit_gib"))
    if capacity and memory_plan.needs_plan(config):
      _say(f"planning memory on {n} device(s) (two probe compiles) ...")
      plan = memory_plan.plan(config, n, capacity)
      note = plan.describe()
      print(note, flush=True)
      run_config = memory_plan.apply(config, plan) if plan.changed else config
    run_model = run_dir.make_model(run_config)[0] if run_config is not config else model
    _say(f"compiling and timing the step on {n} device(s) ...")
    r = time_train_step(run_config, run_model, spec, dev[:n], steps, warmup,
                        profile_dir if n == counts[-1] else None)
    r.update(microbatches=run_config.train.microbatches, remat_chunks=run_config.model.remat_chunks,
             memory_note=note)
    params = r.pop("params")
    peak_n = peak * n if peak and peak_source == "spec" else peak  # fake CPU devices share one CPU
    achieved = model_flops["train_step"] / r["train_step_s"]
    r.update(devices=n, rays_per_s=config.train.batch_size * config.loss.num_rays / r["train_step_s"],
             samples_per_s=points / r["train_step_s"], scenes_per_s=config.train.batch_size / r["train_step_s"],
             achieved_flops_per_s=achieved, peak_flops_per_s=peak_n, mfu=achieved / peak_n if peak_n else None,
             model_over_xla_flops=model_flops["train_step"] / r["xla_flops_per_step"]
             if r["xla_flops_per_step"] else None,
             model_over_lowered_flops=model_flops["train_step"] / r["xla_lowered_flops_per_step"]
             if r["xla_lowered_flops_per_step"] else None)
    if r["mfu"] is not None and r["mfu"] > 1:
      # Not a result: the peak (or the FLOP count) is wrong for this device. Said where the figure is read.
      r["mfu_warning"] = (f"MFU {r['mfu']:.2f} > 1 on {dev[0].device_kind} (matmuls as {arithmetic}, peak "
                          f"{peak_n / 1e12:.1f} TFLOP/s): the peak (nerf_vae_jax/benchmarks/peaks.py) is wrong "
                          f"for this device.")
      print(f"WARNING: {r['mfu_warning']}", flush=True)
    runs[str(n)] = r
  out["per_device_count"] = runs
  out.update({k: v for k, v in runs[str(counts[-1])].items()})  # top level: all local devices
  if len(counts) > 1:
    out["scaling_efficiency"] = runs[str(counts[-1])]["scenes_per_s"] / runs["1"]["scenes_per_s"]
  if step_only:
    return out
  _say("rendering a view ...")
  out["render_view_s"] = time_render(model, params, spec, spec.height, config.eval.chunk)
  out["render_view_size"] = spec.height
  for size in render_sizes:
    out[f"render_view_{size}_s"] = time_render(model, params, spec, int(size), config.eval.chunk, repeats=2)
  _say(f"reading batches with {pipeline_workers} worker(s) ...")
  pipe, name = time_pipeline(config, pipeline_workers, pipeline_batches)
  out.update(pipeline_scenes_per_s=pipe, pipeline_dataset=name, pipeline_workers=pipeline_workers,
             pipeline_scenes_per_s_per_worker=pipe / max(pipeline_workers, 1),
             pipeline_ratio=pipe / out["scenes_per_s"])
  return out


def print_table(r: dict) -> None:
  rows = [("device", f"{r['device']['count']} x {r['device']['kind']} ({r['device']['platform']})"),
          ("jax", r["jax_version"]), ("config", f"{r['config']['variant']} {' '.join(r['config']['overrides'])}")]
  for n, run in r["per_device_count"].items():
    mfu = f"{100 * run['mfu']:.1f}%" if run["mfu"] is not None else "n/a"
    rows += [(f"[{n} device(s)] train step", f"{1e3 * run['train_step_s']:.1f} ms (median), "
                                               f"{run['microbatches']} micro-batch(es), remat chunks "
                                               f"{run['remat_chunks'] or 'off'}"),
             (f"[{n} device(s)] rays/s, samples/s", f"{run['rays_per_s']:,.0f}, {run['samples_per_s']:,.0f}"),
             (f"[{n} device(s)] achieved / peak", f"{run['achieved_flops_per_s'] / 1e9:,.1f} / "
                                                   f"{(run['peak_flops_per_s'] or 0) / 1e9:,.1f} GFLOP/s"),
             (f"[{n} device(s)] MFU", mfu)]
  cpu = f", for the CPU {r['xla_cpu_flops_per_step'] / 1e9:,.2f}" if "xla_cpu_flops_per_step" in r else ""
  rows += [("FLOPs/step", f"formula {r['model_flops_per_step'] / 1e9:,.2f} GFLOP; XLA: lowered "
                          f"{(r['xla_lowered_flops_per_step'] or 0) / 1e9:,.2f}, compiled "
                          f"{(r['xla_flops_per_step'] or 0) / 1e9:,.2f}{cpu}"),
           ("peak", f"{r['peak_source']}: {r['board']}, matmuls as {r['matmul_arithmetic']}")]
  if "scaling_efficiency" in r:
    rows.append(("scaling (scenes/s, all vs 1 device)", f"{r['scaling_efficiency']:.2f}"))
  if "render_view_s" in r:  # not with step_only
    rows.append((f"render one {r['render_view_size']}x{r['render_view_size']} view",
                 f"{1e3 * r['render_view_s']:.1f} ms"))
  rows += [(k.replace("_s", "").replace("_", " "), f"{1e3 * v:.0f} ms") for k, v in r.items()
           if k.startswith("render_view_") and k.endswith("_s") and k != "render_view_s"]
  if "pipeline_scenes_per_s" in r:
    rows.append(("pipeline", f"{r['pipeline_scenes_per_s']:,.0f} scenes/s ({r['pipeline_workers']} workers, "
                             f"{r.get('pipeline_scenes_per_s_per_worker', 0):,.0f} per worker, "
                             f"{r['pipeline_dataset']}), {r['pipeline_ratio']:.1f}x what the step consumes"))
  rows += [("peak memory", f"{r['peak_memory_bytes'] / 2**30:.2f} GiB" if r["peak_memory_bytes"] else "n/a"),
            ("step memory per device (XLA)", f"{r['step_memory_bytes'] / 2**30:.3f} GiB")]
  width = max(len(k) for k, _ in rows)
  for k, v in rows:
    print(f"{k:<{width}}  {v}")
