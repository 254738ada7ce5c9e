"""The FLOP count against XLA's, and a smoke test of the benchmark command's JSON."""

import json
import subprocess
import sys

import jax
import pytest
from conftest import SMALL


from experiments.configs import shape_scenes
from nerf_vae_jax import batch as batch_lib
from nerf_vae_jax import flops
from nerf_vae_jax.benchmarks import train_step as benchmark
from nerf_vae_jax.train import step as training, workdir as trainer
from nerf_vae_jax.models import nerf_vae, objectives


@pytest.mark.parametrize("latent", ["global", "grid", "grid_hierarchical", "grid_hierarchical_per_cell_top_down"])
def test_flop_formula_matches_xla_cost_analysis(latent):
  config = shape_scenes.get_config("tiny")
  config.model.latent = latent.split("_")[0]
  config.model.prior = "hierarchical" if "hierarchical" in latent else "independent"
  config.model.prior_net = "per_cell" if "per_cell" in latent else "pyramid"
  config.model.top_down = 8 if "top_down" in latent else 0
  config.model.latent_dim = 8
  model, spec = trainer.make_model(config)
  batch = batch_lib.synthetic(spec, config.data, 2)
  params = jax.eval_shape(lambda k: training.init_state(model, training.make_optimizer(config.train),
                                                        batch_lib.example(batch_lib.for_config(config, spec.height, spec.width)), k),
                          jax.random.PRNGKey(0))["params"]
  loss = lambda p: objectives.elbo_loss(model, p, batch, jax.random.PRNGKey(0), num_rays=128, likelihood_scale=0.1)[0]
  xla = jax.jit(loss).lower(params).compile().cost_analysis()["flops"]
  counted = flops.train_step_flops(model, 2, config.data.max_context, spec.height, spec.width, 128)
  # XLA also counts elementwise work (a few percent); the matmuls are nearly all of it.
  assert counted["forward"] == pytest.approx(xla, rel=0.06), (counted, xla)
  xla_step = jax.jit(jax.grad(loss)).lower(params).compile().cost_analysis()["flops"]
  assert counted["train_step"] == pytest.approx(xla_step, rel=0.08)


def test_benchmark_writes_its_json(runner_env, tmp_path):
  e, data_dir = runner_env
  e = dict(e, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  out = tmp_path / "bench.json"
  model_overrides = [a for a in SMALL if a.startswith("--config.model") or a.startswith("--config.loss")]
  r = subprocess.run([sys.executable, "-m", "experiments.benchmark", "--config=experiments/configs/shape_scenes.py:tiny",
                      *model_overrides, f"--config.data.data_dir={data_dir}", "--steps=2", "--warmup=1",
                      "--pipeline_batches=3", f"--json={out}"], env=e, capture_output=True, text=True, timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "MFU" in r.stdout
  b = json.loads(out.read_text())
  assert b["device"] == {"kind": "cpu", "platform": "cpu", "count": 2} and b["jax_version"] == jax.__version__
  assert b["config"]["variant"] == "tiny" and "--config.model.mlp_width=32" in b["config"]["overrides"]
  assert set(b["per_device_count"]) == {"1", "2"}
  for run in b["per_device_count"].values():
    assert run["train_step_s"] > 0 and run["recompilations_after_warmup"] == 0 and run["step_memory_bytes"] > 0
    assert run["microbatches"] == 1 and run["memory_note"] is None  # it fits as it is: run as it is
    assert run["achieved_flops_per_s"] == pytest.approx(b["model_flops_per_step"] / run["train_step_s"])
    # (No upper bound: the toy model's in-run peak is a 32-wide matmul, and a busy machine moves it.)
    assert run["mfu"] == pytest.approx(run["achieved_flops_per_s"] / run["peak_flops_per_s"]) and run["mfu"] > 0
    assert b["peak_source"] == "measured"
    assert run["samples_per_s"] == pytest.approx(run["rays_per_s"] * 16)  # 8 coarse + 8 fine samples per ray
  assert b["model_flops_per_step"] == pytest.approx(b["xla_flops_per_step"], rel=0.1)
  assert b["render_view_s"] > 0 and b["pipeline_scenes_per_s"] > 0 and b["pipeline_ratio"] > 0
  assert "scaling_efficiency" in b and "peak_memory_bytes" in b


def test_a_step_that_does_not_fit_is_benchmarked_with_remat_or_micro_batches(monkeypatch):
  """The benchmark's default run must complete: the search over levers, on a closed-form memory model
  (fixed + per scene x scenes per micro-batch, remat keeping 15%; the real figures are test_step's)."""
  from nerf_vae_jax.benchmarks import memory_table
  from nerf_vae_jax.train import memory
  compiled = []

  def fake_step_memory(c):
    compiled.append((c.train.microbatches, c.model.remat_chunks))
    per_scene = 1.0 * (0.15 if c.model.remat_chunks else 1.0)
    return {"total": int((0.1 + per_scene * c.train.batch_size / c.train.microbatches) * memory.GIB)}

  monkeypatch.setattr(memory_table, "step_memory", fake_step_memory)
  config = shape_scenes.get_config("tiny")
  config.train.batch_size = 16  # 8 scenes per device on 2 devices: 8.1 GiB as it is
  assert memory_table.fit_config(config, 2, capacity=10 * memory.GIB) == (config, None)
  assert compiled == [(1, 0)]
  # On the CPU remat comes first (it was faster there): 8 x 0.15 + 0.1 = 1.3 GiB fits 2 GiB without micro-batches.
  compiled.clear()
  fitted, note = memory_table.fit_config(config, 2, capacity=2 * memory.GIB)
  assert (fitted.train.batch_size, fitted.train.microbatches, fitted.model.remat_chunks) == (16, 1, 8)
  assert config.train.microbatches == 1 and config.model.remat_chunks == 0  # the input is not changed
  assert "remat_chunks=8" in note and compiled == [(1, 0), (1, 8)]
  # 0.5 GiB needs remat and 4 micro-batches (0.1 + 0.3 = 0.4 GiB); 2 (1.3 / 2 > 0.45) is not even compiled.
  compiled.clear()
  fitted, note = memory_table.fit_config(config, 2, capacity=int(0.5 * memory.GIB))
  assert (fitted.train.microbatches, fitted.model.remat_chunks) == (4, 8) and compiled == [(1, 0), (1, 8), (4, 8)]
  with pytest.raises(memory.OutOfMemoryError, match="Nothing fits 0.1 GiB per device with 8 scene"):
    memory_table.fit_config(config, 2, capacity=int(0.1 * memory.GIB))
