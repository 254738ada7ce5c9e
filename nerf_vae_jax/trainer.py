"""The training loop: mesh, input pipeline, update step, checkpoints, logs.

``train(config, workdir)`` runs (or resumes) one experiment. It scales from one
CPU to many hosts without change: the step is ``jax.jit`` over a 1-D ``data``
mesh (parameters replicated, batch sharded), each process feeds its own slice
of the global batch, and only process 0 writes logs.
"""

from __future__ import annotations

import functools
import json
import math
import os
import signal
import time

import jax
import numpy as np
from jax.experimental import multihost_utils

from nerf_vae_jax import checkpointing, evaluation, sharding, summaries, training, visualize
from nerf_vae_jax.data import build, pipeline, source
from nerf_vae_jax.models import nerf_vae


class NonFiniteLossError(FloatingPointError):
  pass


def _log(*args):
  if jax.process_index() == 0:
    print(*args, flush=True)


def save_config(config, workdir: str) -> None:
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))


def load_config(workdir: str):
  """The resolved config a run saved in its workdir."""
  import ml_collections
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist: {workdir} is not a training workdir.")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def make_model(config):
  spec = build.parse_name(config.data.name)
  return nerf_vae.from_config(config.model, spec.scene_radius), spec


def _input_pipeline(config, per_process_batch: int):
  # ---- Data: build if missing (process 0), then each process reads its shard.
  name, data_dir = config.data.name, config.data.data_dir or build.default_data_dir()
  if jax.process_index() == 0 and not build.is_built(name, data_dir):
    _log(f"{name} is not in {data_dir}: building it first.")
    build.build(name, data_dir)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("dataset built")
  src = source.SceneSource(name, "train", data_dir)
  views = pipeline.ViewSampling(config.data.min_context, config.data.max_context, config.data.num_targets)
  ds = pipeline.make_dataset(src, batch_size=per_process_batch, views=views, seed=config.seed,
                             process_index=jax.process_index(), process_count=jax.process_count())
  return pipeline.make_iterator(ds, workers=config.data.workers)


def _preview(model, params, batch, spec):
  """context | target | reconstruction | depth of the first scene of a batch (numpy)."""
  one = jax.tree.map(lambda x: x[:1], batch)
  out = evaluation.infer_and_render(model, params, one, (one["target_intrinsics"][:, :1],
                                                         one["target_cam_to_world"][:, :1]), spec.height, spec.width)
  ctx, tgt = jax.device_get((one["context_images"][0, 0], one["target_images"][0, 0]))
  return ctx, tgt, evaluation.to_uint8(out["rgb"][0, 0]), np.asarray(out["depth"][0, 0])


def restore_params(workdir: str, step: int | None = None):
  """The parameters of a run's checkpoint, for evaluation.

  Returns (config, model, spec, params, step): the config saved in the
  workdir, the model it describes, the dataset spec, the parameters (on the
  default device) and the step restored (the latest by default). Raises
  ``checkpointing.NoCheckpointError`` (no checkpoint, or no such step) or
  ``CheckpointMismatchError`` (shapes that do not fit config.json), with
  messages that say what to do.
  """
  config = load_config(workdir)
  model, spec = make_model(config)
  abstract = jax.eval_shape(lambda k: training.init_state(model, training.make_optimizer(config.train),
                                                          training.dummy_batch(spec, config.data), k),
                            jax.random.PRNGKey(0))
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    raise checkpointing.NoCheckpointError(f"{workdir} has no checkpoints: train first, or pass the run's workdir.")
  mngr = checkpointing.manager(workdir)
  try:
    if step is None:
      step = mngr.latest_step()
      if step is None:
        raise checkpointing.NoCheckpointError(f"{workdir}/checkpoints holds no checkpoint: train first.")
    repl = sharding.replicated(sharding.make_mesh())
    try:
      state, _, step = checkpointing.restore(mngr, checkpointing.abstract_like(abstract, repl), step=step,
                                             with_data=False)
    except RuntimeError as e:
      if "shape" in str(e).lower():
        raise CheckpointMismatchError(
            f"The checkpoint at step {step} in {workdir} does not fit the model of {workdir}/config.json "
            f"(was config.json edited, or the checkpoint copied from another run?): {str(e)[-500:]}") from e
      raise
  finally:
    mngr.close()
  return config, model, spec, state["params"], step


class CheckpointMismatchError(ValueError):
  pass


def train(config, workdir: str) -> dict:
  """Trains (or resumes) ``config`` in ``workdir``; returns the last logged metrics."""
  # ---- Set-up.
  save_config(config, workdir)
  mesh = sharding.make_mesh()
  repl, batch_sh = sharding.replicated(mesh), sharding.batch_sharding(mesh)
  per_process = sharding.check_batch_size(config.train.batch_size)
  model, spec = make_model(config)
  tx = training.make_optimizer(config.train)
  init_key, train_key = jax.random.split(jax.random.PRNGKey(config.seed))

  # ---- Train state, created directly in its (replicated) sharding.
  example = training.dummy_batch(spec, config.data)
  init = jax.jit(functools.partial(training.init_state, model, tx), out_shardings=repl)
  traced_init = init.trace(example, init_key)  # traced once: for the shapes and, if needed, to run
  abstract = traced_init.out_info
  mngr = checkpointing.manager(workdir, config.train.keep_checkpoints)
  it = _input_pipeline(config, per_process)
  if mngr.all_steps():
    state, data_state, start = checkpointing.restore(mngr, checkpointing.abstract_like(abstract, repl))
    it.set_state(data_state)
    _log(f"Resumed from the checkpoint at step {start} in {workdir}.")
  else:
    state, start = traced_init.lower().compile()(example, init_key), 0
  n_params = sum(math.prod(x.shape) for x in jax.tree.leaves(abstract["params"]))
  _log(f"NeRF-VAE ({config.model.latent} latent, {n_params:,} parameters) on {jax.device_count()} "
       f"{jax.devices()[0].platform} device(s), {jax.process_count()} process(es); global batch "
       f"{config.train.batch_size} scenes; steps {start} -> {config.train.num_steps}.")

  # ---- The update step: state donated, batch sharded on `data`.
  step_fn = jax.jit(functools.partial(training.train_step, model, tx, config),
                    in_shardings=(repl, batch_sh, repl), out_shardings=(repl, repl), donate_argnums=0)

  writer = summaries.Writer(workdir, enabled=jax.process_index() == 0, resume_step=start)
  stop = {"signal": None}
  previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop.update(signal=signum))

  def checkpoint(step):
    checkpointing.save(mngr, step, state, it.get_state())

  # ---- The loop. The host waits on the device only at logging and
  # checkpoint steps, where the losses since the last check are inspected.
  pending, last, t0, s0 = [], {}, time.time(), start
  rays_per_step = config.train.batch_size * config.loss.num_rays
  try:
    for step in range(start + 1, config.train.num_steps + 1):
      batch = sharding.global_batch({k: v for k, v in next(it).items() if k != "scene_id"}, mesh)
      state, metrics = step_fn(state, batch, train_key)
      pending.append((step, metrics["loss"]))
      is_log = step % config.train.log_every == 0 or step == config.train.num_steps
      is_ckpt = step % config.train.checkpoint_every == 0 or step == config.train.num_steps
      if is_log or is_ckpt or stop["signal"]:
        for s, loss in pending:
          if not np.isfinite(float(loss)):
            raise NonFiniteLossError(
                f"The loss became {float(loss)} at step {s}; stopping. The last good checkpoint is kept in "
                f"{workdir}/checkpoints (step {mngr.latest_step()}). Lower config.train.learning_rate or "
                f"check the data.")
        pending = []
      if is_log:
        dt = time.time() - t0
        last = {k: float(v) for k, v in jax.device_get(metrics).items()}
        last["steps_per_s"] = (step - s0) / dt
        last["rays_per_s"] = last["steps_per_s"] * rays_per_step
        writer.scalars(step, last)
        eta = (config.train.num_steps - step) / max(last["steps_per_s"], 1e-9)
        _log(f"step {step}/{config.train.num_steps}  loss {last['loss']:.4f}  psnr {last['psnr']:.2f}  "
             f"kl {last['kl']:.1f}  {last['steps_per_s']:.2f} steps/s  {last['rays_per_s']:,.0f} rays/s  "
             f"ETA {eta / 60:.1f} min")
        t0, s0 = time.time(), step
      if config.train.image_every and step % config.train.image_every == 0 and jax.process_index() == 0:
        ctx, tgt, rgb, depth = _preview(model, state["params"], batch, spec)
        writer.image(step, "context|target|reconstruction|depth",
                     visualize.grid([[ctx, tgt, rgb, visualize.depth_to_rgb(depth)]]))
      if is_ckpt or stop["signal"]:
        checkpoint(step)
      if stop["signal"]:
        _log(f"Signal {stop['signal']} received: saved a checkpoint at step {step}; exiting.")
        break
  finally:
    mngr.wait_until_finished()
    writer.close()
    signal.signal(signal.SIGTERM, previous)
  return last
