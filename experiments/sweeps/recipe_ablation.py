"""The CPU study of RESULTS.md: the tiny recipe, the reference, and the recipe with each change switched off.

  python -m experiments.sweep --config=experiments/configs/shape_scenes.py:tiny \\
      --sweep=experiments/sweeps/recipe_ablation.py --workdir=DIR --config.train.time_budget_minutes=12 \\
      --config.train.checkpoint_every=150 --config.train.keep_checkpoints=1000 --config.train.num_steps=100000
  python -m experiments.curves --workdirs=DIR/trial_0,...,DIR/trial_5 --labels=recipe,reference,... --out=curves.png

Every trial gets the same wall-clock budget; RESULTS.md ran them two at a time, one core each
(taskset), so that their minutes compare.
"""

REFERENCE = {"model.latent": "global", "model.latent_dim": 64, "loss.targets": "held_out",
             "loss.object_fraction": 0.0, "model.film_init_scale": 0.0}


def get_sweep():
  return [
      {},  # the recipe (the tiny config)
      REFERENCE,
      {"model.latent": "global", "model.latent_dim": 64},  # no grid latent
      {"loss.targets": "held_out"},  # no context views among the targets
      {"loss.object_fraction": 0.0},  # uniform rays
      {"model.film_init_scale": 0.0},  # zero FiLM initialisation
  ]
  # (A learning-rate floor is not an arm: with num_steps=100000 the cosine schedule stays within 0.1% of
  # its peak for the whole budget, so the floor cannot matter here.)
