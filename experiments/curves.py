"""Learning curves of one or more runs: held-out metrics of every checkpoint against training minutes
(nerf_vae_jax/evaluation/curves.py).

  python -m experiments.curves --workdirs=A,B --labels=global,grid --out=curves.png [--num_scenes=32]
"""

import sys

from absl import app, flags

from experiments import common
from nerf_vae_jax import errors
from nerf_vae_jax.evaluation import curves

flags.DEFINE_list("workdirs", None, "Training runs' workdirs.")
flags.DEFINE_list("labels", None, "A label per workdir (default: the workdirs).")
flags.DEFINE_string("out", "curves.png", "The plot (a Markdown table of the last checkpoints is printed).")
flags.DEFINE_string("split", "test", "Dataset split.")
flags.DEFINE_integer("num_scenes", 32, "Scenes evaluated per checkpoint.")
flags.DEFINE_string("data_dir", None, "Where the dataset is (default: each run's).")
flags.mark_flags_as_required(["workdirs"])
FLAGS = flags.FLAGS


def learning_curves():
  labels = FLAGS.labels or FLAGS.workdirs
  if len(labels) != len(FLAGS.workdirs):
    raise errors.UserError(f"{len(FLAGS.workdirs)} workdirs but {len(labels)} labels.")
  runs = {label: curves.learning_curve(w, FLAGS.split, FLAGS.num_scenes, data_dir=FLAGS.data_dir)
          for label, w in zip(labels, FLAGS.workdirs)}
  curves.plot(runs, FLAGS.out)
  print(curves.last_row_table(runs))
  print(f"Wrote {FLAGS.out}")


def main(argv):
  del argv
  sys.exit(common.run(learning_curves))


if __name__ == "__main__":
  app.run(main)
