"""Shared fixtures: the tiny dataset is built once per test session."""

import os

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
  from nerf_vae_jax.data import build
  data_dir = os.environ.get("NERF_VAE_TEST_DATA_DIR") or str(tmp_path_factory.mktemp("tfds"))
  build.build("shape_scenes/tiny", data_dir)
  return data_dir
