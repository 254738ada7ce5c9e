"""The per-view encoder: an NVAE-style ResNet over image + camera rays.

Each context view is encoded on its own. The input is the image (scaled to
[-1, 1]) concatenated with the Plücker coordinates of its pixel rays (6
channels from ``geometry.plucker``), so the encoder knows where the view was
taken from. Residual cells follow NVAE: GroupNorm, swish, 3x3 conv, twice,
then squeeze-and-excitation, added to the input. GroupNorm (not NVAE's batch
norm) keeps the model a pure function of its parameters: no batch statistics
to carry in the train state, and no dependence on how the batch is sharded.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp


def _groups(channels: int) -> int:
  return min(8, channels)


class SqueezeExcite(nn.Module):
  """Channel gating from globally pooled features. x: [..., H, W, C]."""
  reduction: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    s = jnp.mean(x, axis=(-3, -2))
    s = nn.relu(nn.Dense(max(c // self.reduction, 4), dtype=self.dtype)(s))
    s = nn.sigmoid(nn.Dense(c, dtype=self.dtype)(s))
    return x * s[..., None, None, :]


class ResidualCell(nn.Module):
  """x + SE(conv(swish(GN(conv(swish(GN(x))))))). x: [N, H, W, C]."""
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[-1]
    h = x
    for _ in range(2):
      h = nn.swish(nn.GroupNorm(num_groups=_groups(c), dtype=self.dtype)(h))
      h = nn.Conv(c, (3, 3), dtype=self.dtype)(h)
    return x + SqueezeExcite(dtype=self.dtype)(h)


class Encoder(nn.Module):
  """Views -> per-view Gaussian parameters.

  Attributes:
    channels: feature channels per stage; each stage after the first halves
      the resolution with a strided conv.
    cells_per_stage: residual cells per stage.
    num_outputs: size of the output vector (2 x the latent's size: a mean and
      an unconstrained scale parameter per latent dimension).
  """
  channels: Sequence[int] = (32, 64, 128)
  cells_per_stage: int = 1
  num_outputs: int = 256  # 0: return the feature map instead (the grid latent reads it)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images, rays):
    """images: float [N, H, W, 3] in [-1, 1]; rays: [N, H, W, 6] Plücker.
    Returns float32 [N, num_outputs], or the feature map [N, h, w, C] if num_outputs is 0."""
    x = jnp.concatenate([images, rays], axis=-1).astype(self.dtype)
    x = nn.Conv(self.channels[0], (3, 3), dtype=self.dtype)(x)
    for i, c in enumerate(self.channels):
      if i > 0:
        x = nn.Conv(c, (3, 3), strides=(2, 2), dtype=self.dtype)(x)
      for _ in range(self.cells_per_stage):
        x = ResidualCell(dtype=self.dtype)(x)
    x = nn.swish(nn.GroupNorm(num_groups=_groups(x.shape[-1]), dtype=self.dtype)(x))
    if not self.num_outputs:
      return x.astype(jnp.float32)
    x = jnp.mean(x, axis=(1, 2))
    # A zero-initialised head: every view starts at the same posterior
    # (mean 0, scale from the bias in the posterior module), which keeps the
    # first steps stable.
    return nn.Dense(self.num_outputs, kernel_init=nn.initializers.zeros, dtype=jnp.float32)(x).astype(jnp.float32)
