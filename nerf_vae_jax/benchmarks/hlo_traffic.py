"""Bytes each op of a compiled step moves, read from its optimised HLO text (no device time needed).

A memory-bound step's time is about its bytes over the memory bandwidth, and
the optimised HLO says what each top-level op (a fusion, a library matmul, a
copy) reads and writes: the sizes of its operands and results. ``traffic``
sums them per op and groups the ops by where they come from in the model
(the ``op_name`` metadata JAX writes, e.g. ``scene_function/film_0`` in the
backward pass). It counts an operand as read once, whole: a fusion that reads
a slice counts too much, one that re-reads counts too little; so the total
is a lead, compared with the measured step time at the device's bandwidth.
"""

from __future__ import annotations

import collections
import re

_BYTES = {"f64": 8, "f32": 4, "bf16": 2, "f16": 2, "s64": 8, "u64": 8, "s32": 4, "u32": 4, "s16": 2, "u16": 2,
          "s8": 1, "u8": 1, "pred": 1}
_SHAPE = re.compile(r"\b(" + "|".join(_BYTES) + r")\[([0-9,]*)\]")
_INSTRUCTION = re.compile(r"(?:ROOT )?%(\S+) = (.*?) ([a-z][\w-]*)\((.*)")
_FREE = {"parameter", "get-tuple-element", "tuple", "bitcast", "constant"}  # no bytes of their own


def shape_bytes(text: str) -> int:
  """Bytes of every array shape written in ``text`` (e.g. "(f32[2,3], bf16[4])" -> 32)."""
  total = 0
  for dtype, dims in _SHAPE.findall(text):
    n = 1
    for d in filter(None, dims.split(",")):
      n *= int(d)
    total += n * _BYTES[dtype]
  return total


def _entry(hlo: str) -> list[str]:
  start = hlo.index("\nENTRY")
  body = hlo[hlo.index("{\n", start) + 2:]
  return body[:body.index("\n}\n")].split("\n")


def source_of(op_name: str) -> str:
  """'jit(step)/transpose(jvp(vmap(M.f)))/scene_function/film_0/dot_general' -> 'backward film_0/dot_general'."""
  backward = "transpose(" in op_name
  path = [p for p in op_name.split("/") if p and "(" not in p]
  return ("backward " if backward else "forward ") + "/".join(path[-2:])


def traffic(hlo: str, top: int = 30) -> dict:
  """Bytes read and written by each top-level op of the entry computation of ``hlo`` (compiled.as_text())."""
  sizes, ops = {}, []
  for line in _entry(hlo):
    m = _INSTRUCTION.match(line.strip())
    if not m:
      continue
    name, shape, opcode, rest = m.groups()
    sizes[name] = shape_bytes(shape)
    if opcode in _FREE:
      continue
    operands = re.findall(r"%([\w.\-]+)", rest.split("), ")[0])
    meta = re.search(r'op_name="([^"]*)"', line)
    ops.append({"op": name, "opcode": opcode, "written": sizes[name],
                "read": sum(sizes.get(o, 0) for o in operands), "source": source_of(meta.group(1) if meta else "")})
  total = sum(o["read"] + o["written"] for o in ops)
  groups, counts = collections.Counter(), collections.Counter()
  for o in ops:
    groups[o["source"]] += o["read"] + o["written"]
    counts[o["source"]] += 1
  ops.sort(key=lambda o: -(o["read"] + o["written"]))
  return {"total_bytes": total, "ops": len(ops),
          "by_source": [{"source": s, "bytes": b, "ops": counts[s], "share": b / total if total else 0.0}
                        for s, b in groups.most_common(top)],
          "largest": ops[:top]}


def markdown(t: dict, bandwidth: float | None = None) -> str:
  at = f"; at {bandwidth / 1e12:.1f} TB/s that is {1e3 * t['total_bytes'] / bandwidth:.0f} ms" if bandwidth else ""
  lines = [f"Bytes read + written by the step's {t['ops']} top-level ops: {t['total_bytes'] / 1e9:.1f} GB{at}.", "",
           "| where in the model | ops | GB | share |", "|---|---|---|---|"]
  lines += [f"| {g['source']} | {g['ops']} | {g['bytes'] / 1e9:.2f} | {100 * g['share']:.1f}% |"
            for g in t["by_source"]]
  return "\n".join(lines)
