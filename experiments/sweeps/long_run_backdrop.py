"""The long-run backdrop study of RESULTS.md (2026-11-26, 6c87dea, "the long-run recipe"): the backdrop options of
the demo's recipe on the tiny_long config, each arm stopped after 30 minutes of its 6,500-step schedule.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m experiments.sweep \\
      --config=experiments/configs/shape_scenes.py:tiny_long --sweep=experiments/sweeps/long_run_backdrop.py \\
      --workdir=DIR --config.train.time_budget_minutes=30 --config.train.image_every=0
  python -m experiments.curves --workdirs=DIR/trial_0,DIR/trial_1,DIR/trial_2 --labels=long,token+colour,colour

RESULTS.md ran the arms one after another on both cores; trial 0 as the plain tiny_long command (6,500 steps).
tiny_long was then 1/2 of the rays on objects, learning rate 2e-3 and a 200-step KL warm-up (since b0fead2 it
is tiny's schedule): add ``--config.loss.object_fraction=0.5 --config.train.learning_rate=2e-3
--config.loss.beta_warmup_steps=200`` to rerun the study as it was.
"""

ARMS = [
    {"model.background_token": False, "model.colour_features": False},  # tiny_long of the study (6c87dea)
    {"model.background_token": True, "model.colour_features": True},  # both: the demo's tiny from 48ec688 to 6c87dea
    {"model.background_token": False, "model.colour_features": True},  # colours as features only (tiny_long, 3a1b9fa)
]


def get_sweep():
  # The study ran before the learned priors: the independent prior.
  return [dict(arm, **{"model.prior": "independent"}) for arm in ARMS]
