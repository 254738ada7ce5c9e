"""The backdrop study of RESULTS.md (session 7): demo-sized runs (the tiny config's 1,800 steps), two seeds each.

  python -m experiments.sweep --config=experiments/configs/shape_scenes.py:tiny \\
      --sweep=experiments/sweeps/backdrop_seeds.py --workdir=DIR --config.train.image_every=0
  python -m experiments.evaluate --workdir=DIR/trial_<i> --num_scenes=64 --context=1,4
  python -m experiments.diagnose_background --workdir=DIR/trial_<i>

RESULTS.md ran them two at a time, each on one core (taskset) with 4 host devices.
"""

import itertools

ARMS = [
    {"loss.object_fraction": 0.5},  # the recipe before session 6
    {},  # the tiny config as it was (3/4 of the rays on objects)
    {"model.background_token": True},  # a scene-wide token for the background head
    {"model.background_token": True, "model.colour_features": True},  # ... and the views' colours as features
]


def get_sweep():
  return [dict(arm, seed=seed) for seed, arm in itertools.product((0, 1), ARMS)]
