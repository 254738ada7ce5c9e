"""Data throughput: scene generation and the input pipeline (nerf_vae_jax/benchmarks/data_throughput.py).

  python -m experiments.benchmark_data --config=64px --num_scenes=1024 --workers=2
  python -m experiments.benchmark_data --config=tiny --loader_only --data_dir=DIR
"""

import json
import sys

from absl import app, flags

from experiments import common
from nerf_vae_jax.benchmarks import data_throughput
from nerf_vae_jax.scenes import specs

flags.DEFINE_enum("config", "64px", list(specs.SPECS), "The shape_scenes config.")
flags.DEFINE_integer("num_scenes", 1024, "Scenes to generate.")
flags.DEFINE_integer("workers", 2, "Rendering processes.")
flags.DEFINE_string("data_dir", None, "A built dataset, for the loader part.")
flags.DEFINE_bool("loader_only", False, "Skip the generation part.")
flags.DEFINE_list("loader_workers", ["0", "2"], "Worker counts for the loader part (0: in-process).")
flags.DEFINE_integer("batch_size", 16, "Scenes per batch for the loader part.")
FLAGS = flags.FLAGS


def measure():
  if not FLAGS.loader_only:
    print(json.dumps(data_throughput.generation(FLAGS.config, FLAGS.num_scenes, FLAGS.workers)), flush=True)
  if FLAGS.data_dir:
    for w in FLAGS.loader_workers:
      print(json.dumps(data_throughput.loader(FLAGS.config, FLAGS.data_dir, int(w), FLAGS.batch_size)), flush=True)


def main(argv):
  del argv
  sys.exit(common.run(measure))


if __name__ == "__main__":
  app.run(main)
