"""Imports point one way: a module imports only its own layer or the layers below it."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Lowest first. A module's layer is the first entry that names it or its package.
LAYERS = [
    ["nerf_vae_jax.errors", "nerf_vae_jax.geometry", "nerf_vae_jax.image_metrics"],
    ["nerf_vae_jax.rendering", "nerf_vae_jax.scenes", "nerf_vae_jax.visualize", "nerf_vae_jax.sharding",
     "nerf_vae_jax.batching"],
    ["nerf_vae_jax.models", "nerf_vae_jax.data", "nerf_vae_jax.baselines", "nerf_vae_jax.flops"],
    ["nerf_vae_jax.train"],
    ["nerf_vae_jax.evaluation"],
    ["nerf_vae_jax.benchmarks"],
    ["experiments"],
]


def layer_of(module: str):
  for i, names in enumerate(LAYERS):
    if any(module == n or module.startswith(n + ".") for n in names):
      return i
  return None


def project_imports(path: pathlib.Path) -> list[tuple[int, str]]:
  """(line, module) of every import of a project module in the file, ``from pkg import mod`` as ``pkg.mod``."""
  out = []
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      out += [(node.lineno, a.name) for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
  return [(line, m) for line, m in out if m.split(".")[0] in ("nerf_vae_jax", "experiments")]


def module_name(path: pathlib.Path) -> str:
  return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


# Every module but the package's own __init__ (which imports nothing of the project).
FILES = sorted(p for d in ("nerf_vae_jax", "experiments") for p in (ROOT / d).rglob("*.py")
               if p != ROOT / "nerf_vae_jax" / "__init__.py")


def test_every_project_module_has_a_layer():
  assert [module_name(p) for p in FILES if layer_of(module_name(p)) is None] == []
  assert project_imports(ROOT / "nerf_vae_jax" / "__init__.py") == []


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_import_points_up(path):
  here = layer_of(module_name(path))
  up = [f"line {line}: {m} (layer {layer_of(m)} > {here})" for line, m in project_imports(path)
        if layer_of(m) is not None and layer_of(m) > here]
  assert not up, f"{module_name(path)} imports from above its layer: {up}"


def test_the_check_sees_an_upward_import(tmp_path):
  bad = tmp_path / "bad.py"
  bad.write_text("from nerf_vae_jax.evaluation import metrics\nimport nerf_vae_jax.train.update\n")
  assert [layer_of(m) for _, m in project_imports(bad)] == [4, 3]
  assert layer_of("nerf_vae_jax.models.objectives") == 2 < layer_of("nerf_vae_jax.evaluation.view_metrics")
