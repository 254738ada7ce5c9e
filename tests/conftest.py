"""Shared fixtures: the tiny dataset is built once per test run; in-process
tests see 2 host devices (data parallelism is exercised in-process)."""

import functools
import os
import shutil
import subprocess
import sys
import tempfile

import pytest
from absl import flags

import nerf_vae_jax  # noqa: F401  (first: its process defaults, nerf_vae_jax/__init__.py, precede numpy's)

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# XLA's CPU backend without LLVM's optimisations: the suite's programs compile 3x faster (a toy model's
# initialisation: 9 s against 28 s) and, being toys, still run in milliseconds. Numerics are IEEE either way.
FAST_COMPILE = "--xla_backend_optimization_level=0"


def xla_flags(devices: int) -> str:
  """XLA_FLAGS for a process of the suite with ``devices`` host devices."""
  return f"--xla_force_host_platform_device_count={devices} {FAST_COMPILE}"


os.environ.setdefault("XLA_FLAGS", xla_flags(2))  # before JAX starts
# One compilation cache for the run, shared by the xdist workers (they inherit the controller's environment)
# and the subprocesses: many tests compile the same small programs (the toy config's step, init, renderer).
_OWN_CACHE = "NERF_VAE_TEST_JAX_CACHE" not in os.environ  # this process made it (the controller): it removes it
os.environ.setdefault("NERF_VAE_TEST_JAX_CACHE", tempfile.mkdtemp(prefix="nerf_vae_jax_test_cache_"))
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.environ["NERF_VAE_TEST_JAX_CACHE"])
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
flags.FLAGS.mark_as_parsed()  # as an absl app would (grain's worker processes read absl flags)


# Files whose tests share an expensive fixture (a training run, a compiled step) run on one xdist worker, the
# heaviest first so that the other worker is not left alone at the end; every other test goes wherever a worker
# is free. (xdist's own --dist=loadgroup tags node ids, which pytest 9.2 no longer lets it change: it silently
# stopped grouping, pytest-xdist issue 1386.)
ONE_WORKER_FILES = ["test_evaluation.py", "test_loop.py", "test_train.py", "test_multiview.py", "test_update.py",
                    "test_memory_plan.py"]


def _file_of(nodeid: str) -> str:
  return os.path.basename(nodeid.split("::")[0])


def pytest_collection_modifyitems(items):
  """The grouped files first, in ``ONE_WORKER_FILES``' order (the scheduler below keeps the order)."""
  rank = {name: i for i, name in enumerate(ONE_WORKER_FILES)}
  items.sort(key=lambda item: rank.get(_file_of(item.nodeid), len(rank)))  # stable: file order otherwise


def pytest_xdist_make_scheduler(config, log):
  from xdist.scheduler import LoadScopeScheduling

  class FileGroups(LoadScopeScheduling):
    def _split_scope(self, nodeid):
      return nodeid.split("::")[0] if _file_of(nodeid) in ONE_WORKER_FILES else nodeid

  config.option.loadscopereorder = False
  return FileGroups(config, log)


def pytest_configure(config):
  """Under xdist, the controller builds the tiny dataset once, before the workers start (they inherit
  NERF_VAE_TEST_DATA_DIR); otherwise each worker built its own, both at once."""
  if (_OWN_CACHE and getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput")
      and "NERF_VAE_TEST_DATA_DIR" not in os.environ):
    from nerf_vae_jax.data import build
    data_dir = tempfile.mkdtemp(prefix="nerf_vae_jax_test_data_")
    build.build("shape_scenes/tiny", data_dir)
    os.environ["NERF_VAE_TEST_DATA_DIR"] = config._nerf_vae_test_data_dir = data_dir


def pytest_unconfigure(config):
  if _OWN_CACHE:
    shutil.rmtree(os.environ["NERF_VAE_TEST_JAX_CACHE"], ignore_errors=True)
  if getattr(config, "_nerf_vae_test_data_dir", None):
    shutil.rmtree(config._nerf_vae_test_data_dir, ignore_errors=True)


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
         "--config.model.grid_size=4", "--config.model.prior_rank=8",  # 1,024 numbers per latent: 8 factors
         # The KL's and the opacity weight's ramps of fixed length (by default they span the run): runs of
         # different lengths (resumed, or compared with a 12-step reference) share their first steps' losses.
         "--config.loss.beta_warmup_steps=100", "--config.loss.opacity_warmup_steps=100"]


@pytest.fixture(scope="package")  # tests/ is one directory: built once per run
def runner_env(tiny_data_dir):
  """(environment for subprocesses, tiny data dir); the subprocesses share a compilation cache."""
  # With the run's compilation cache (above), on one host device.
  e = dict(os.environ, PYTHONUNBUFFERED="1", JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags(1))
  return e, tiny_data_dir


def train_args(data_dir, workdir, steps, ckpt_every=4, extra=()):
  return [sys.executable, "-m", "experiments.train", *SMALL, f"--config.data.data_dir={data_dir}",
          f"--workdir={workdir}", f"--config.train.num_steps={steps}",
          f"--config.train.checkpoint_every={ckpt_every}", *extra]


def run_ok(env, args, **kw):
  r = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300, **kw)
  assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
  return r


def perturbed(params, noise: float, key=None):
  """``params`` + noise x N(0, 1) (one key per leaf), in one compiled program: drawn leaf by leaf, eagerly,
  each shape compiled a sampler of its own (half a second each)."""
  import jax
  return _perturb()(params, noise, jax.random.PRNGKey(1) if key is None else key)


@functools.cache
def _perturb():
  import jax

  @jax.jit
  def add(params, noise, key):
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(tree, [p + noise * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])
  return add


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
