"""The training loop: mesh, input pipeline, update step, checkpoints, logs.

``train(config, workdir)`` runs (or resumes) one experiment. It scales from one
CPU to many hosts without change: the step is ``jax.jit`` over a 1-D ``data``
mesh (parameters replicated, batch sharded), each process feeds its own slice
of the global batch, and only process 0 writes logs.
"""

from __future__ import annotations

import functools
import math
import os
import signal
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from nerf_vae_jax import batching
from nerf_vae_jax import errors, sharding, visualize
from nerf_vae_jax.data import build, pipeline, source
from nerf_vae_jax.models import nerf_vae
from nerf_vae_jax.train import checkpoints, memory, memory_plan, update, summaries, run_dir


class NonFiniteLossError(errors.UserError):
  """The loss became NaN or infinite."""


_IMPORTED = time.time()  # about when the command started (the first log line reports the start-up time)


def _uptime() -> str:
  """Seconds since start-up, for the start-up's log lines (minutes of planning and compiling on a GPU)."""
  return f"{time.time() - _IMPORTED:.0f} s after start-up"


def _log(*args):
  if jax.process_index() == 0:
    print(*args, flush=True)


def input_pipeline(config, per_process_batch: int):
  """A checkpointable iterator over this process's rows of the training batches.

  Process 0 builds the dataset first if ``config.data.data_dir`` lacks it.
  """
  name, data_dir = config.data.name, config.data.data_dir or build.default_data_dir()
  if jax.process_index() == 0 and not build.is_built(name, data_dir):
    _log(f"{name} is not in {data_dir}: building it first.")
    build.build(name, data_dir)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("dataset built")
  src = source.SceneSource(name, "train", data_dir, only_views=True)  # decodes only the views it picks
  views = pipeline.ViewSampling(config.data.min_context, config.data.max_context, config.data.num_targets)
  ds = pipeline.make_dataset(src, batch_size=per_process_batch, views=views, seed=config.seed,
                             process_index=jax.process_index(), process_count=jax.process_count())
  workers = pipeline.worker_count(config.data.workers, jax.devices()[0].platform, os.cpu_count())
  if workers != config.data.workers:
    _log(f"Reading the data with {workers} worker process(es) (config.data.workers={config.data.workers}: auto).")
  return pipeline.make_iterator(ds, workers=workers)


def agree_to_stop(local: bool) -> bool:
  """True on every process if ``local`` is True on any: a collective, so every process calls it at the same step.

  A SIGTERM (preemption) or the time budget reaches each host on its own;
  a process that checkpointed and left alone would leave the others blocked
  in the next step's collectives.
  """
  if jax.process_count() == 1:
    return local
  return bool(np.any(multihost_utils.process_allgather(np.asarray([local]))))


def _preview_arrays(model, params, batch, height: int, width: int):
  """The first scene of a batch: its first context and target views, and the target rendered from the context."""
  one = jax.tree.map(lambda x: x[:1], batch)
  latent = nerf_vae.infer(model, params, one).mean
  out = nerf_vae.render_views(model, params, latent, one["target_intrinsics"][:, :1],
                              one["target_cam_to_world"][:, :1], height, width)
  return {"context": one["context_images"][0, 0], "target": one["target_images"][0, 0],
          "rgb": out["rgb"][0, 0], "depth": out["depth"][0, 0]}


def make_preview(model, spec, mesh):
  """params, batch -> context | target | reconstruction | depth of the batch's first scene, uint8 [H, W', 3].

  A collective over the global batch: every process must call it at the same
  step (the output is replicated, so every process can read it; only
  process 0 writes it). Called on process 0 alone, the others would run ahead
  into the next step and the run would hang or abort.
  """
  render = jax.jit(functools.partial(_preview_arrays, model, height=spec.height, width=spec.width),
                   out_shardings=sharding.replicated(mesh))

  def preview(params, batch) -> np.ndarray:
    a = jax.device_get(render(params, batch))
    return visualize.grid([[a["context"], a["target"], visualize.to_uint8(a["rgb"]), visualize.depth_to_rgb(a["depth"])]])

  return preview


def _initial_state(config, workdir, model, tx, spec, mngr, it, repl, init_key):
  """The train state, created directly in its (replicated) sharding or restored with the data iterator's
  position; returns (state, its abstract shapes, the start step)."""
  example = batching.example(batching.for_config(config, spec.height, spec.width))
  init = jax.jit(functools.partial(update.init_state, model, tx), out_shardings=repl)
  traced_init = init.trace(example, init_key)  # traced once: for the shapes and, if needed, to run
  abstract = traced_init.out_info
  if mngr.all_steps():
    state, data_state, start = checkpoints.restore(mngr, checkpoints.abstract_like(abstract, repl))
    it.set_state(data_state)
    _log(f"Resumed from the checkpoint at step {start} in {workdir}.")
  else:
    state, start = traced_init.lower().compile()(example, init_key), 0
  return state, abstract, start


def _plan_memory(config):
  """``config`` with the micro-batches and remat its step needs to fit (``memory_plan``), decided from two
  small probe compiles before the real one; unchanged on the CPU without a memory limit."""
  capacity = memory.device_capacity(config.train.get("memory_limit_gib"))
  if not capacity or not memory_plan.needs_plan(config):
    return config
  plan = memory_plan.plan(config, jax.device_count(), capacity)
  _log(plan.describe() + f" [{_uptime()}]")
  return memory_plan.apply(config, plan) if plan.changed else config


def _compiled_step(config, model, tx, spec, mesh, abstract, train_key):
  """The update step (state donated, batch sharded on ``data``), compiled ahead of the first batch so that
  a step that cannot fit stops here, with the numbers."""
  repl, batch_sh = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  step_fn = jax.jit(functools.partial(update.train_step, model, tx, config, devices=mesh.size),
                    in_shardings=(repl, batch_sh, repl), out_shardings=(repl, repl), donate_argnums=0)
  batch_structs = {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=batch_sh) for k, v in
                   batching.for_config(config, spec.height, spec.width, config.train.batch_size).items()}
  step_fn = step_fn.lower(checkpoints.abstract_like(abstract, repl), batch_structs, train_key).compile()
  _log(memory.report(memory.step_bytes(step_fn), memory.device_capacity(config.train.get("memory_limit_gib")),
                     config) + f" [compiled {_uptime()}]")
  return step_fn


def _check_losses(pending, mngr, workdir):
  """Raises NonFiniteLossError at the first NaN or infinite loss among (step, loss) pairs."""
  for s, loss in jax.device_get(pending):
    if not np.isfinite(loss):
      last_good = mngr.latest_step()
      kept = (f"The last good checkpoint is kept in {workdir}/checkpoints (step {last_good})."
              if last_good is not None else "No checkpoint had been saved yet.")
      raise NonFiniteLossError(f"The loss became {float(loss)} at step {s}; stopping. {kept} Lower "
                               f"config.train.learning_rate or check the data.")


class _Progress:
  """Throughput since the last log, training minutes carried over a resume (for learning curves against
  time), and the wall-clock budget (the same for every arm of a study)."""

  def __init__(self, config, workdir, start):
    earlier = [r for r in summaries.read_metrics(workdir) if r["step"] <= start]
    self.elapsed0 = earlier[-1].get("elapsed_minutes", 0.0) if earlier else 0.0
    self.t_start = self.t0 = time.time()
    self.logged = False
    self.s0, self.num_steps = start, config.train.num_steps
    self.rays_per_step = config.train.batch_size * config.loss.num_rays
    budget = config.train.get("time_budget_minutes", 0)
    self.deadline = time.time() + 60 * budget if budget else float("inf")

  def out_of_time(self) -> bool:
    return time.time() > self.deadline

  def log(self, step, metrics, writer) -> dict:
    """Writes the step's metrics with its throughput and prints the progress line; returns the metrics."""
    last = {k: float(v) for k, v in jax.device_get(metrics).items()}
    last["steps_per_s"] = (step - self.s0) / (time.time() - self.t0)
    last["rays_per_s"] = last["steps_per_s"] * self.rays_per_step
    last["elapsed_minutes"] = self.elapsed0 + (time.time() - self.t_start) / 60
    writer.scalars(step, last)
    eta = (self.num_steps - step) / max(last["steps_per_s"], 1e-9)
    # The first line also says how long the start took (planning, compiling, the data workers): minutes on a GPU.
    started = "" if self.logged else f"  (first log {_uptime()})"
    _log(f"step {step}/{self.num_steps}  loss {last['loss']:.4f}  psnr {last['psnr']:.2f}  "
         f"kl {last['kl']:.1f}  {last['steps_per_s']:.2f} steps/s  {last['rays_per_s']:,.0f} rays/s  "
         f"ETA {eta / 60:.1f} min{started}")
    self.t0, self.s0, self.logged = time.time(), step, True
    return last


def _next_examples(it, stop, pending, mngr, workdir, state, step):
  """The next batch of examples; None when a stop signal reached the data workers too (a SIGTERM to the whole
  process group, as `timeout` and many schedulers send) and they died: then the last finished step, step - 1,
  is saved with its checkpoint. A data error without a stop signal is raised."""
  try:
    return next(it)
  except Exception:
    if not stop["signal"]:
      raise
    _check_losses(pending, mngr, workdir)
    checkpoints.save(mngr, step - 1, state, it.get_state())
    print(f"Stopping ({stop['signal']}; the data workers were stopped too): saved a checkpoint at step "
          f"{step - 1}; exiting.", flush=True)
    return None


def train(config, workdir: str) -> dict:
  """Trains (or resumes) ``config`` in ``workdir``; returns the last logged metrics, and under "stopped" why the
  run stopped before its last step (a signal's number, "time budget", or "another process was told to stop";
  None when it reached it)."""
  config = _plan_memory(config)  # the levers it chose are saved with the config
  run_dir.save_config(config, workdir)
  mesh = sharding.make_mesh()
  repl = sharding.replicated(mesh)
  model, spec = run_dir.make_model(config)
  tx = update.make_optimizer(config.train)
  mngr = checkpoints.manager(workdir, config.train.keep_checkpoints)
  # The workers start after the plan: 14 of them started before it (and its two probes compiled side by side)
  # on a 16-core GPU host made the start slower, not faster (BENCHMARKS.md, "On one GPU: a 64px run, the input
  # pipeline and the start-up").
  it = input_pipeline(config, sharding.check_batch_size(config.train.batch_size))
  init_key, train_key = jax.random.split(jax.random.PRNGKey(config.seed))
  state, abstract, start = _initial_state(config, workdir, model, tx, spec, mngr, it, repl, init_key)
  n_params = sum(math.prod(x.shape) for x in jax.tree.leaves(abstract["params"]))
  _log(f"NeRF-VAE ({config.model.latent} latent, {n_params:,} parameters) on {jax.device_count()} "
       f"{jax.devices()[0].platform} device(s), {jax.process_count()} process(es); global batch "
       f"{config.train.batch_size} scenes; steps {start} -> {config.train.num_steps}.")
  train_key = jax.device_put(train_key, repl)
  step_fn = _compiled_step(config, model, tx, spec, mesh, abstract, train_key)
  preview = make_preview(model, spec, mesh)
  writer = summaries.Writer(workdir, enabled=jax.process_index() == 0, resume_step=start)
  stop = {"signal": None}
  previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.update(signal=signum))
  progress, pending, last, final = _Progress(config, workdir, start), [], {}, config.train.num_steps
  stopped = None
  # How often the processes agree on stopping: every step on one process (free), else every few steps
  # (a small all-gather that waits for the step in flight).
  stop_every = 1 if jax.process_count() == 1 else config.train.get("stop_check_every", 10)
  try:
    # The host waits on the device only at logging and checkpoint steps, where the losses since the last
    # check are inspected.
    for step in range(start + 1, final + 1):
      examples = _next_examples(it, stop, pending, mngr, workdir, state, step)
      if examples is None:
        stopped = stop["signal"]
        break
      batch = sharding.global_batch(batching.model_inputs(examples), mesh)
      # Everything the step reads is already on the devices: an implicit host-to-device copy here would be
      # a silent slowdown, so it is an error.
      with jax.transfer_guard("disallow"):
        state, metrics = step_fn(state, batch, train_key)
      pending.append((step, metrics["loss"]))
      if progress.out_of_time():
        stop["signal"] = stop["signal"] or "time budget"
      stopping = (step % stop_every == 0 or step == final) and agree_to_stop(bool(stop["signal"]))
      is_log = step % config.train.log_every == 0 or step == final
      is_ckpt = step % config.train.checkpoint_every == 0 or step == final
      if is_log or is_ckpt or stopping:
        _check_losses(pending, mngr, workdir)
        pending = []
      if is_log:
        last = progress.log(step, metrics, writer)
      if config.train.image_every and step % config.train.image_every == 0:  # every process: a collective
        writer.image(step, "context|target|reconstruction|depth", preview(state["params"], batch))
      if is_ckpt or stopping:
        checkpoints.save(mngr, step, state, it.get_state())
      if stopping:
        why = stopped = stop["signal"] or "another process was told to stop"
        print(f"[process {jax.process_index()}] Stopping ({why}): saved a checkpoint at step {step}; exiting.",
              flush=True)
        break
  finally:
    mngr.wait_until_finished()
    writer.close()
    signal.signal(signal.SIGTERM, previous)
  return {**last, "stopped": stopped}
