"""The latent-conditioned scene function: (point, direction, latent) -> (density, colour).

A NeRF MLP over positional encodings of the 3D point (normalised by the scene
radius) and of the view direction. Every hidden layer is FiLM-modulated by a
conditioning vector c: h <- relu(W h * (1 + gamma(c)) + beta(c)).

* ``global`` latent z [B, D]: c = z, the same for every point of a scene.
* ``grid`` latent z [B, G^3, D] (a grid of cells in the world,
  ``models/grid.py``): c is the trilinear interpolation of the cells around
  the point, so each part of space reads the latent of where it is.
* ``none``: no latent and no FiLM layers: a plain NeRF MLP (the per-scene
  baseline, ``nerf_vae_jax.baselines.nerf``).

Density is a shifted softplus, softplus(raw - 1), so empty space is cheap to
represent at initialisation; colour is view dependent (the direction enters
after the trunk). Matmuls may run in bfloat16 (``dtype``); the inputs'
positional encodings and the heads' outputs stay float32.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from nerf_vae_jax import errors, rendering
from nerf_vae_jax.models import grid


DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# SceneFunction's field <- the NeRF-VAE setting (a config.model field, and the NeRFVAE field of that name).
_SETTINGS = {"width": "mlp_width", "depth": "mlp_depth", "position_frequencies": "position_frequencies",
             "direction_frequencies": "direction_frequencies", "grid_size": "grid_size",
             "film_init_scale": "film_init_scale"}


def dtype_of(name: str):
  """The matmul dtype of ``config.model.dtype``."""
  if name not in DTYPES:
    raise errors.ConfigError(f"config.model.dtype={name!r}; choose one of {', '.join(DTYPES)}.")
  return DTYPES[name]


def of_settings(settings, *, conditioning: str, scene_radius: float, dtype) -> "SceneFunction":
  """The scene function of NeRF-VAE settings: a ``config.model`` or a ``NeRFVAE`` (the same field names).
  ``conditioning="none"``: the per-scene NeRF's, without the latent."""
  return SceneFunction(**{field: getattr(settings, name) for field, name in _SETTINGS.items()},
                       conditioning=conditioning, scene_radius=scene_radius, dtype=dtype)


class SceneFunction(nn.Module):
  width: int = 128
  depth: int = 4
  position_frequencies: int = 8
  direction_frequencies: int = 3
  conditioning: str = "global"  # "global", "grid" or "none"
  grid_size: int = 8  # grid only: G cells per axis
  film_init_scale: float = 0.0  # std of the FiLM kernels at initialisation (0: zeros)
  scene_radius: float = 1.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, points, directions, latent, density_noise=None):
    """
    Args:
      points: [B, R, S, 3] world positions; directions: [B, R, 3] unit rays.
      latent: [B, D] (global), [B, G^3, D] (grid) or None (none).
      density_noise: None or [B, R, S], added to the raw density before its
        activation (``rendering.render_coarse_fine``'s ``density_noise``).

    Returns:
      density [B, R, S] >= 0 and rgb [B, R, S, 3] in (0, 1), float32.
    """
    x = rendering.positional_encoding(points / self.scene_radius, self.position_frequencies)
    d = rendering.positional_encoding(directions, self.direction_frequencies)
    if self.conditioning == "global":
      cond = latent[:, None, None, :]  # [B, 1, 1, D]
    elif self.conditioning == "grid":
      cond = grid.trilinear(latent, points, self.grid_size, self.scene_radius)  # [B, R, S, D]
    elif self.conditioning == "none":
      cond = None
    else:
      raise ValueError(f"conditioning must be 'global', 'grid' or 'none', not {self.conditioning!r}")
    # Zero FiLM kernels leave the latent without gradient at the start (only
    # the background head would reach the encoder); a small scale lets the
    # scene content pull on it from the first step.
    film_init = (nn.initializers.normal(self.film_init_scale) if self.film_init_scale
                 else nn.initializers.zeros)
    h = x.astype(self.dtype)
    for i in range(self.depth):
      h = nn.Dense(self.width, dtype=self.dtype, name=f"layer_{i}")(h)
      if cond is not None:
        gamma, beta = FiLM(self.width, dtype=self.dtype, kernel_init=film_init, name=f"film_{i}")(cond)
        h = h * (1.0 + gamma) + beta
      h = nn.relu(h)
    density = nn.Dense(1, dtype=self.dtype, name="density")(h)[..., 0].astype(jnp.float32)
    feat = nn.Dense(self.width, dtype=self.dtype, name="bottleneck")(h)
    h = nn.relu(ViewLayer(self.width // 2, dtype=self.dtype, name="view")(feat, d))
    rgb = nn.Dense(3, dtype=self.dtype, name="rgb")(h).astype(jnp.float32)
    if density_noise is not None:
      density = density + density_noise
    return jax.nn.softplus(density - 1.0), jax.nn.sigmoid(rgb)


class FiLM(nn.Module):
  """cond [..., D] -> (gamma, beta) [..., features] each: ``nn.Dense(2 * features)`` split in two (the same
  parameters, {"kernel": [D, 2F], "bias": [2F]}), computed as two matmuls on the two halves of the kernel.

  Why: split after the matmul, the backward pass concatenates the two halves' gradients into one
  [points, 2F] array before the kernel's gradient; on a GPU with the ``grid`` latent (a FiLM per point) those
  concatenations were a quarter of the step's memory traffic (BENCHMARKS.md, "Where the step's time goes").
  Split before it, only the [D, 2F] kernel gradient is concatenated."""
  features: int
  dtype: Any = jnp.float32
  kernel_init: Any = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, cond):
    kernel = self.param("kernel", self.kernel_init, (cond.shape[-1], 2 * self.features))
    bias = self.param("bias", nn.initializers.zeros, (2 * self.features,))
    cond, kernel, bias = nn.dtypes.promote_dtype(cond, kernel, bias, dtype=self.dtype)
    f = self.features
    return cond @ kernel[:, :f] + bias[:f], cond @ kernel[:, f:] + bias[f:]


class ViewLayer(nn.Module):
  """``nn.Dense(features)`` of [point features, the ray's direction encoding] (the same parameters: kernel
  [F + Q, features], the features' rows first), with the direction's product computed once per ray.

  feat [B, R, S, F] (per point), d [B, R, Q] (per ray) -> [B, R, S, features]. Why: concatenating d to every
  point's features wrote a [points, F + Q] array, and on a GPU that concatenation and its backward split took
  8% of the ``grid`` step (BENCHMARKS.md, "Where the step's time goes")."""
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, feat, d):
    f = feat.shape[-1]
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (f + d.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    feat, d, kernel, bias = nn.dtypes.promote_dtype(feat, d, kernel, bias, dtype=self.dtype)
    return feat @ kernel[:f] + (d @ kernel[f:])[:, :, None, :] + bias


class BackgroundHead(nn.Module):
  """Latent -> background colour [B, 3] (the scenes' plain backgrounds vary)."""
  width: int = 64

  @nn.compact
  def __call__(self, latent):
    z = latent if latent.ndim == 2 else jnp.mean(latent, axis=1)  # grid: the mean of its cells
    h = nn.relu(nn.Dense(self.width)(z))
    return jax.nn.sigmoid(nn.Dense(3)(h))
