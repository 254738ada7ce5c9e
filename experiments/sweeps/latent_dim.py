"""Sweep: latent size x posterior combination (a product of overrides)."""

import itertools


def get_sweep():
  return [{"model.latent_dim": d, "model.posterior": p}
          for d, p in itertools.product([32, 64, 128], ["average", "poe"])]
