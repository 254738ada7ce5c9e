"""Trains NeRF-VAE (resuming from the workdir if it holds checkpoints).

  python -m experiments.train --config=experiments/configs/shape_scenes.py:tiny --workdir=DIR [--config.x=y]

Several processes (one per host): pass --coordinator_address, --num_processes
and --process_id, or set the environment variables jax.distributed reads
(on Cloud TPU and SLURM nothing is needed: pass --distributed).
"""

import sys

from absl import app, flags
from ml_collections import config_flags

from experiments import common

config_flags.DEFINE_config_file("config", None, "Experiment config file[:variant].", lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, logs and config.json go.")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for multi-process runs.")
flags.DEFINE_integer("num_processes", None, "Number of processes in a multi-process run.")
flags.DEFINE_integer("process_id", None, "This process's index in a multi-process run.")
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() with its auto-detection.")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  import jax
  if FLAGS.coordinator_address or FLAGS.distributed:
    # CPU collectives across processes (no effect on GPU/TPU collectives). Nothing
    # may touch the backend before initialize().
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  from nerf_vae_jax.train import loop
  sys.exit(common.run(loop.train, config=FLAGS.config, workdir=FLAGS.workdir))


if __name__ == "__main__":
  app.run(main, flags_parser=common.parse_flags)
