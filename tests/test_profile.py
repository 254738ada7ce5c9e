"""Reading where a step's time and bytes go: the profiler's trace and the compiled HLO's traffic."""

import gzip
import json

import jax
import jax.numpy as jnp
import pytest

from nerf_vae_jax.benchmarks import hlo_traffic, profile


def test_op_breakdown_sums_device_events_per_op_and_kind(tmp_path):
  meta = [{"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "/device:GPU:0"}},
          {"ph": "M", "name": "process_name", "pid": 2, "args": {"name": "/host:CPU"}}]
  ev = lambda pid, name, dur, op=None: {"ph": "X", "pid": pid, "name": name, "dur": dur,
                                        "args": {"hlo_op": op} if op else {}}
  events = meta + [ev(1, "nvjet_gemm", 3000, "gemm_fusion_dot.1"), ev(1, "nvjet_gemm", 1000, "gemm_fusion_dot.1"),
                   ev(1, "loop_add_fusion", 2000, "loop_add_fusion.3"),
                   # Kernels inside a CUDA graph carry the graph's name as their op: they keep their own.
                   ev(1, "input_reduce_fusion_7", 4000, "command_buffer_12"), ev(2, "host work", 9000)]
  path = tmp_path / "t.json.gz"
  with gzip.open(path, "wt") as f:
    json.dump({"traceEvents": events}, f)
  b = profile.op_breakdown(path, steps=2)
  assert b["source"] == "device" and b["device_ms_per_step"] == pytest.approx(5.0)  # 10 ms over 2 steps
  assert {o["op"]: o["ms_per_step"] for o in b["ops"]} == {
      "gemm_fusion_dot.1": 2.0, "input_reduce_fusion_7": 2.0, "loop_add_fusion.3": 1.0}
  assert {k["kind"]: k["ms_per_step"] for k in b["kinds"]} == {"matmul": 2.0, "reduce": 2.0,
                                                               "elementwise fusion": 1.0}


def test_shape_bytes_counts_every_array_in_a_shape():
  assert hlo_traffic.shape_bytes("(f32[2,3]{1,0}, bf16[4]{0}, pred[])") == 24 + 8 + 1
  assert hlo_traffic.source_of("jit(step)/transpose(jvp(vmap(M.f)))/scene_function/film_0/dot_general") == \
      "backward film_0/dot_general"


def test_traffic_of_a_compiled_function_counts_its_inputs_and_outputs():
  # One fusion on the CPU: reads x (4 MiB) once, writes the result (4 MiB).
  x = jnp.ones((1024, 1024), jnp.float32)
  hlo = jax.jit(lambda x: jnp.sin(x) * 2.0 + 1.0).lower(x).compile().as_text()
  t = hlo_traffic.traffic(hlo)
  assert t["total_bytes"] == 2 * 4 * 2 ** 20 and t["ops"] == 1
  # A concatenation's output is as large as its inputs together.
  t2 = hlo_traffic.traffic(jax.jit(lambda x: jnp.concatenate([jnp.sin(x), jnp.cos(x)])).lower(x).compile().as_text())
  assert t2["total_bytes"] >= 3 * 4 * 2 ** 20
