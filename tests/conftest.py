"""Shared fixtures: the tiny dataset is built once per test run; in-process
tests see 2 host devices (data parallelism is exercised in-process)."""

import os
import shutil
import subprocess
import sys
import tempfile

import pytest
from absl import flags

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")  # before JAX starts
# One compilation cache for the run, shared by the xdist workers (they inherit the controller's environment)
# and the subprocesses: many tests compile the same small programs (the toy config's step, init, renderer).
_OWN_CACHE = "NERF_VAE_TEST_JAX_CACHE" not in os.environ  # this process made it (the controller): it removes it
os.environ.setdefault("NERF_VAE_TEST_JAX_CACHE", tempfile.mkdtemp(prefix="nerf_vae_jax_test_cache_"))
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.environ["NERF_VAE_TEST_JAX_CACHE"])
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
flags.FLAGS.mark_as_parsed()  # as an absl app would (grain's worker processes read absl flags)


def pytest_unconfigure(config):
  if _OWN_CACHE:
    shutil.rmtree(os.environ["NERF_VAE_TEST_JAX_CACHE"], ignore_errors=True)


@pytest.fixture(scope="package")  # tests/ is one directory: built once per run
def tiny_data_dir(tmp_path_factory):
  from nerf_vae_jax.data import build
  data_dir = os.environ.get("NERF_VAE_TEST_DATA_DIR") or str(tmp_path_factory.mktemp("tfds"))
  build.build("shape_scenes/tiny", data_dir)
  return data_dir


# ---- A toy model of the tiny config (runner and evaluation tests), as flags and as a config.
SMALL = ["--config=experiments/configs/shape_scenes.py:tiny", "--config.data.name=shape_scenes/tiny",
         "--config.train.log_every=1",
         "--config.train.image_every=0", "--config.model.num_coarse=8", "--config.model.num_fine=8",
         "--config.loss.num_rays=32", "--config.model.encoder_channels=(8,16)", "--config.model.mlp_width=32",
         "--config.model.mlp_depth=2", "--config.data.max_context=2", "--config.model.latent_dim=16",
         "--config.model.grid_size=4",
         # The KL's and the opacity weight's ramps of fixed length (by default they span the run): runs of
         # different lengths (resumed, or compared with a 12-step reference) share their first steps' losses.
         "--config.loss.beta_warmup_steps=100", "--config.loss.opacity_warmup_steps=100"]


@pytest.fixture(scope="package")  # tests/ is one directory: built once per run
def runner_env(tiny_data_dir):
  """(environment for subprocesses, tiny data dir); the subprocesses share a compilation cache."""
  e = dict(os.environ, PYTHONUNBUFFERED="1", JAX_PLATFORMS="cpu")  # with the run's compilation cache (above)
  e.pop("XLA_FLAGS", None)
  return e, tiny_data_dir


def train_args(data_dir, workdir, steps, ckpt_every=4, extra=()):
  return [sys.executable, "-m", "experiments.train", *SMALL, f"--config.data.data_dir={data_dir}",
          f"--workdir={workdir}", f"--config.train.num_steps={steps}",
          f"--config.train.checkpoint_every={ckpt_every}", *extra]


def run_ok(env, args, **kw):
  r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, **kw)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  return r


def small_config(data_dir, steps, ckpt_every=4):
  """The config of ``train_args``, for in-process runs."""
  from experiments.configs import shape_scenes
  import ast
  c = shape_scenes.get_config("tiny")
  for arg in SMALL[1:]:
    field, value = arg[len("--config."):].split("=")
    section, name = field.split(".")
    c[section][name] = value if value.isidentifier() or "/" in value else ast.literal_eval(value)
  c.data.data_dir, c.train.num_steps, c.train.checkpoint_every = data_dir, steps, ckpt_every
  return c
