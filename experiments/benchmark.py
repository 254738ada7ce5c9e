"""Training-step benchmark: time, throughput, MFU, rendering, input pipeline
(nerf_vae_jax/benchmarks/step_timing.py).

  python -m experiments.benchmark --config=experiments/configs/shape_scenes.py:global [--config.x=y]
      [--json=FILE] [--steps=20] [--profile_dir=DIR]
  # Memory per device against per-device batch, micro-batches and remat (compiled, not run):
  python -m experiments.benchmark --config=experiments/configs/shape_scenes.py:global --memory_table \
      [--batches=1,2,4,8] [--microbatches=1,2,4] [--capacity_gib=80]
"""

import json
import sys

from absl import app, flags
from ml_collections import config_flags

from experiments import common
from nerf_vae_jax.benchmarks import hlo_traffic, memory_table, profile, step_timing

config_flags.DEFINE_config_file("config", None, "Experiment config file[:variant].", lock_config=True)
flags.DEFINE_string("json", None, "Also write the results to this JSON file.")
flags.DEFINE_integer("steps", 20, "Timed training steps (after the warm-up).")
flags.DEFINE_integer("warmup", 3, "Untimed steps first (compilation, caches).")
flags.DEFINE_integer("pipeline_workers", 2, "grain workers for the pipeline measurement.")
flags.DEFINE_integer("pipeline_batches", 40, "Batches read for the pipeline measurement.")
flags.DEFINE_list("render_sizes", [], "Also render one view of each of these sizes (e.g. 256) and time it.")
flags.DEFINE_string("profile_dir", None, "Also profile 3 steps (jax.profiler) into this folder and print the "
                    "device time per op kind and per op (nerf_vae_jax/benchmarks/profile.py), and the bytes "
                    "each op of the compiled step moves (hlo_traffic.py).")
flags.DEFINE_bool("step_only", False, "Only compile, time (and --profile_dir) the step on all local devices: "
                  "no CPU FLOP reference, renderer or pipeline (a short accelerator lease).")
flags.DEFINE_bool("memory_table", False, "Only tabulate the step's memory per device (nerf_vae_jax/benchmarks/"
                  "memory_table.py) over --batches x --microbatches x remat off/on.")
flags.DEFINE_list("batches", ["1", "2", "4", "8"], "Scenes per device for --memory_table.")
flags.DEFINE_list("microbatches", ["1", "2", "4"], "Micro-batch counts for --memory_table.")
flags.DEFINE_float("capacity_gib", 80.0, "For --memory_table: the scenes per micro-batch that fit a device this big.")
flags.mark_flags_as_required(["config"])
FLAGS = flags.FLAGS


def benchmark_and_report():
  overrides = [a for a in sys.argv[1:] if a.startswith("--config.")]
  if FLAGS.memory_table:
    r = memory_table.run(FLAGS.config, [int(b) for b in FLAGS.batches], [int(m) for m in FLAGS.microbatches],
                         FLAGS.capacity_gib)
    print(memory_table.markdown(r))
    if FLAGS.json:
      with open(FLAGS.json, "w") as f:
        json.dump(r, f, indent=2)
    return
  r = step_timing.benchmark(FLAGS.config, overrides, FLAGS.steps, FLAGS.warmup, FLAGS.pipeline_workers,
                           FLAGS.pipeline_batches, FLAGS.render_sizes, FLAGS.profile_dir, FLAGS.step_only)
  step_timing.print_table(r)
  if r.get("op_breakdown"):
    print(profile.markdown(r["op_breakdown"]))
  if r.get("hlo_traffic"):
    t = r["hlo_traffic"]
    print(hlo_traffic.markdown(t))
    print(f"That is {t['bytes_per_s'] / 1e12:.2f} TB/s over the median step.")
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump(r, f, indent=2)


def main(argv):
  del argv
  sys.exit(common.run(benchmark_and_report))


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
