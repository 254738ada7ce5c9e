"""The FLOP count against XLA's, and a smoke test of the benchmark command's JSON."""

import json
import subprocess
import sys

import jax
import pytest
from conftest import SMALL, xla_flags


from experiments.configs import shape_scenes
from nerf_vae_jax import batching
from nerf_vae_jax import flops
from nerf_vae_jax.train import update, run_dir
from nerf_vae_jax.models import objectives


@pytest.mark.parametrize("latent", ["global", "grid", "grid_factor", "grid_factor_coarse0"])
def test_flop_formula_matches_xla_cost_analysis(latent):
  config = shape_scenes.get_config("tiny")
  config.model.latent = latent.split("_")[0]
  config.model.prior = "factor" if "factor" in latent else "independent"
  config.model.latent_dim = 8
  model, spec = run_dir.make_model(config)
  batch = batching.synthetic(spec, config.data, 2)
  params = jax.eval_shape(lambda k: update.init_state(model, update.make_optimizer(config.train),
                                                        batching.example(batching.for_config(config, spec.height, spec.width)), k),
                          jax.random.PRNGKey(0))["params"]
  coarse_weight = 0.0 if "coarse0" in latent else 0.1  # 0: the coarse pass's backward is never built
  loss = lambda p: objectives.elbo_loss(model, p, batch, jax.random.PRNGKey(0), num_rays=128, likelihood_scale=0.1,
                                        coarse_weight=coarse_weight)[0]
  # XLA's count of the lowered programs (before optimisation, as the benchmark reconciles; compiling them
  # too took 4x longer and agreed as closely on the CPU). It also counts elementwise work (a few percent).
  xla = jax.jit(loss).lower(params).cost_analysis()["flops"]
  counted = flops.train_step_flops(model, 2, config.data.max_context, spec.height, spec.width, 128,
                                   coarse_grad=bool(coarse_weight))
  assert counted["forward"] == pytest.approx(xla, rel=0.05), (counted, xla)
  xla_step = jax.jit(jax.grad(loss)).lower(params).cost_analysis()["flops"]
  assert counted["train_step"] == pytest.approx(xla_step, rel=0.05), (counted, xla_step)


def test_benchmark_writes_its_json(runner_env, tmp_path):
  e, data_dir = runner_env
  e = dict(e, XLA_FLAGS=xla_flags(2))
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
    assert run["microbatches"] == 1 and run["memory_note"] is None  # the CPU without a limit: no plan, as it is
    assert run["achieved_flops_per_s"] == pytest.approx(b["model_flops_per_step"] / run["train_step_s"])
    # The CPU's peak is measured at least 256 wide, a bound on what the toy's 32-wide layers reach.
    assert run["mfu"] == pytest.approx(run["achieved_flops_per_s"] / run["peak_flops_per_s"])
    assert 0 < run["mfu"] <= 1 and "mfu_warning" not in run
    assert b["peak_source"] == "measured"
    assert run["samples_per_s"] == pytest.approx(run["rays_per_s"] * 16)  # 8 coarse + 8 fine samples per ray
  assert b["model_flops_per_step"] == pytest.approx(b["xla_flops_per_step"], rel=0.1)
  # The lowered step is the whole (2-device) program before optimisation: at least the compiled work, plus
  # what XLA removes (here about a third more).
  assert b["xla_flops_per_step"] <= b["xla_lowered_flops_per_step"] <= 2 * b["xla_flops_per_step"]
  assert b["board"] == "host CPU" and b["matmul_arithmetic"] == "fp32"
  assert b["render_view_s"] > 0 and b["pipeline_scenes_per_s"] > 0 and b["pipeline_ratio"] > 0
  assert "scaling_efficiency" in b and "peak_memory_bytes" in b
