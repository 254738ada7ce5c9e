"""A run's directory: its resolved config, the model it describes, and its checkpoints' parameters.

  WORKDIR/config.json      the resolved config (written by the training loop)
  WORKDIR/checkpoints/     orbax checkpoints (``train.checkpoints``)
  WORKDIR/metrics.jsonl    logs (``train.summaries``)
  WORKDIR/eval/            what evaluation writes (``evaluation``)
"""

from __future__ import annotations

import json
import os

import jax
import ml_collections

from nerf_vae_jax import batching
from nerf_vae_jax import errors, sharding
from nerf_vae_jax.data import build
from nerf_vae_jax.models import nerf_vae
from nerf_vae_jax.scenes import specs
from nerf_vae_jax.train import checkpoints, update


class CheckpointMismatchError(errors.UserError):
  """A checkpoint whose shapes do not fit the model of config.json."""


def save_config(config, workdir: str) -> None:
  if jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2))


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config a run saved in its workdir."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise errors.UserError(f"{path} does not exist: {workdir} is not a training workdir.")
  with open(path) as f:
    try:
      return ml_collections.ConfigDict(json.load(f))
    except json.JSONDecodeError as e:
      raise errors.UserError(f"{path} is not valid JSON ({e}): restore it from the run's copy or rewrite it "
                             f"with the config that trained {workdir}.") from None


def make_model(config) -> tuple[nerf_vae.NeRFVAE, specs.SceneSpec]:
  """The model of a config, and the spec of its dataset (image size, scene radius)."""
  spec = build.spec_of(config.data.name, config.data.data_dir)
  return nerf_vae.from_config(config.model, spec.scene_radius), spec


def abstract_state(config, model, spec):
  """The train state's shapes and dtypes (nothing computed)."""
  example = batching.example(batching.for_config(config, spec.height, spec.width))
  tx = update.make_optimizer(config.train)
  return jax.eval_shape(lambda k: update.init_state(model, tx, example, k), jax.random.PRNGKey(0))


def restore_params(workdir: str, step: int | None = None):
  """The parameters of a run's checkpoint, for evaluation.

  Returns (config, model, spec, params, step): the config saved in the
  workdir, the model it describes, the dataset spec, the parameters
  (replicated over all devices) and the step restored (the latest by
  default). Raises ``checkpoints.NoCheckpointError`` (no checkpoint, or no
  such step) or ``CheckpointMismatchError`` (shapes that do not fit
  config.json), with messages that say what to do.
  """
  config = load_config(workdir)
  model, spec = make_model(config)
  abstract = abstract_state(config, model, spec)
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    raise checkpoints.NoCheckpointError(f"{workdir} has no checkpoints: train first, or pass the run's workdir.")
  mngr = checkpoints.manager(workdir)
  try:
    if step is None:
      step = mngr.latest_step()
      if step is None:
        raise checkpoints.NoCheckpointError(f"{workdir}/checkpoints holds no checkpoint: train first.")
    repl = sharding.replicated(sharding.make_mesh())
    try:
      state, _, step = checkpoints.restore(mngr, checkpoints.abstract_like(abstract, repl), step=step,
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
