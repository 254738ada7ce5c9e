"""Where a step's device time goes: a ``jax.profiler`` trace read back as a table of ops.

``trace_steps`` records a few calls of a compiled step with
``create_perfetto_trace=True`` (a Chrome-trace JSON beside the XPlane file,
readable without TensorBoard); ``op_breakdown`` sums the duration of each op
on the device (GPU kernels, TPU ops; on the CPU, the host's XLA ops) and
groups them into kinds, so a table says how much is matmul, how much is
elementwise fusions, gathers, scatters, sorts and copies.
"""

from __future__ import annotations

import collections
import gzip
import json
import pathlib

import jax

# Op kinds, matched in order against the op's name (lower case): the first match wins.
KINDS = (
    ("matmul", ("gemm", "nvjet", "cublas", "cutlass", "dot", "matmul", "conv", "xmma", "sm90_")),
    ("gather", ("gather", "dynamic-slice", "dynamic_slice")),
    ("scatter", ("scatter", "dynamic-update-slice", "dynamic_update_slice")),
    ("sort", ("sort", "topk")),
    ("reduce", ("reduce", "reduction")),
    ("copy / transpose", ("copy", "transpose", "memcpy", "memset")),
    ("elementwise fusion", ("fusion", "loop_", "input_")),
)


def trace_steps(run_once, steps: int, log_dir: str) -> pathlib.Path:
  """Calls ``run_once()`` (one step, blocked on) ``steps`` times under the profiler; returns the perfetto
  trace's path."""
  with jax.profiler.trace(log_dir, create_perfetto_trace=True):
    for _ in range(steps):
      run_once()
  found = sorted(pathlib.Path(log_dir).glob("**/perfetto_trace.json.gz"), key=lambda p: p.stat().st_mtime)
  if not found:
    raise FileNotFoundError(f"jax.profiler wrote no perfetto_trace.json.gz under {log_dir}")
  return found[-1]


def kind_of(name: str) -> str:
  n = name.lower()
  return next((kind for kind, keys in KINDS if any(k in n for k in keys)), "other")


def op_breakdown(trace_path, steps: int, top: int = 40) -> dict:
  """Device time per op and per kind, in ms per step, from a Chrome-trace JSON (gzipped or not).

  Device events are those of processes named '/device:...' (a GPU's or TPU's streams); where there are
  none (the CPU), the host's events that are not Python frames ('$file:line') or runtime bookkeeping.
  """
  opener = gzip.open if str(trace_path).endswith(".gz") else open
  with opener(trace_path, "rt") as f:
    data = json.load(f)
  events = data["traceEvents"] if isinstance(data, dict) else data
  procs = {e["pid"]: e.get("args", {}).get("name", "") for e in events
           if e.get("ph") == "M" and e.get("name") == "process_name"}
  device_pids = {pid for pid, name in procs.items() if name.startswith("/device:")}
  per_op = collections.Counter()
  for e in events:
    if e.get("ph") != "X":
      continue
    name = e.get("name", "")
    if device_pids:
      if e.get("pid") not in device_pids:
        continue
    elif name.startswith("$") or "::" in name or name.startswith(("end: ", "Pjit")):
      continue
    op = (e.get("args") or {}).get("hlo_op", name)
    if op.startswith("command_buffer"):  # XLA's CUDA graphs: a kernel inside one keeps its own name
      op = name
    per_op[op] += e.get("dur", 0.0) / 1e3  # microseconds -> ms
  total = sum(per_op.values())
  per_kind = collections.Counter()
  for op, ms in per_op.items():
    per_kind[kind_of(op)] += ms
  share = lambda ms: ms / total if total else 0.0
  return {"device_ms_per_step": total / steps, "source": "device" if device_pids else "host",
          "kinds": [{"kind": k, "ms_per_step": ms / steps, "share": share(ms)} for k, ms in per_kind.most_common()],
          "ops": [{"op": op, "kind": kind_of(op), "ms_per_step": ms / steps, "share": share(ms)}
                  for op, ms in per_op.most_common(top)]}


def markdown(b: dict) -> str:
  lines = [f"Device time {b['device_ms_per_step']:.1f} ms per step ({b['source']} events).", "",
           "| kind | ms per step | share |", "|---|---|---|"]
  lines += [f"| {k['kind']} | {k['ms_per_step']:.2f} | {100 * k['share']:.1f}% |" for k in b["kinds"]]
  lines += ["", "| op | kind | ms per step | share |", "|---|---|---|---|"]
  lines += [f"| `{o['op'][:60]}` | {o['kind']} | {o['ms_per_step']:.2f} | {100 * o['share']:.1f}% |"
            for o in b["ops"]]
  return "\n".join(lines)
