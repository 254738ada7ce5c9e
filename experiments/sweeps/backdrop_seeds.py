"""The backdrop study of RESULTS.md (2026-11-25, 48ec688): demo-sized runs (tiny's 1,800 steps), two seeds each.

  python -m experiments.sweep --config=experiments/configs/shape_scenes.py:tiny \\
      --sweep=experiments/sweeps/backdrop_seeds.py --workdir=DIR --config.train.image_every=0
  python -m experiments.evaluate --workdir=DIR/trial_<i> --num_scenes=64 --context=1,4
  python -m experiments.diagnose_background --workdir=DIR/trial_<i>

RESULTS.md ran them two at a time, each on one core (taskset) with 4 host devices. Every arm sets
both backdrop options, so the arms stay what they were whatever the tiny config's defaults (both on from
48ec688 to 6c87dea; colour features only since d3b910e).
"""

import itertools

_OFF = {"model.background_token": False, "model.colour_features": False}
# The study ran before the learned priors: every arm keeps the
# independent prior it was run with.
ARMS = [dict(arm, **{"model.prior": "independent"}) for arm in [
    {"loss.object_fraction": 0.5, **_OFF},  # the recipe before the object-rays study
    dict(_OFF),  # the tiny config before the backdrop study (3/4 of the rays on objects)
    {"model.background_token": True, "model.colour_features": False},  # a scene-wide token for the background head
    {"model.background_token": False, "model.colour_features": True},  # the views' colours as features (tiny today)
    {"model.background_token": True, "model.colour_features": True},  # both: tiny from 48ec688 to 6c87dea
]]


def get_sweep():
  return [dict(arm, seed=seed) for seed, arm in itertools.product((0, 1), ARMS)]
