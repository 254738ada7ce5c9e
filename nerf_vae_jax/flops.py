"""Matmul FLOPs of NeRF-VAE, counted from the architecture (for MFU).

A dense layer with n_in inputs and n_out outputs costs 2 n_in n_out FLOPs per
row; a k x k convolution costs 2 k^2 C_in C_out per output pixel. Only
matmuls and convolutions count (norms, activations, positional encodings and
compositing are not "model FLOPs"). A training step costs 3 x the forward
pass (the backward pass computes gradients with respect to both weights and
activations, 2 x the forward), the usual convention for MFU; with
``loss.coarse_weight`` 0 the coarse pass has no backward, so it counts once.

Per step, with B scenes, K = max_context views of H x W pixels, R rays per
scene and S = num_coarse + num_fine samples per ray:

  forward = B K encoder(H, W) + B R S point_mlp + 2 B per_scene_mlp

where encoder() sums the encoder's convolutions (stem, strided, two per
residual cell, squeeze-excitation and the head), point_mlp is the scene
function's per-point layers (P = 3 (2 F_pos + 1) and Q = 3 (2 F_dir + 1)
encoding sizes, width W, depth L):

  2 [P W + (L - 1) W^2 + W + W^2 + (W + Q) W/2 + 3 W/2]        (global)
  + L 2 D 2 W                                 (grid: per-point FiLM from the
      interpolated D-dimensional cell latent)

and per_scene_mlp the layers run once per scene and pass (FiLM or token
projections, the background head). The factor prior adds its projections
of each scene's latent onto its factors (``prior_flops``), and its Woodbury
factors once per step (``prior_step_flops``).
"""

from __future__ import annotations

import math


def encoder_flops(height: int, width: int, channels, cells: int, num_outputs: int) -> int:
  """Forward FLOPs of ``models.encoder.Encoder`` on one view."""
  conv = lambda h, w, cin, cout: 2 * h * w * 9 * cin * cout
  h, w = height, width
  total = conv(h, w, 3 + 6, channels[0])  # image + Plücker rays
  for i, c in enumerate(channels):
    if i > 0:
      h, w = math.ceil(h / 2), math.ceil(w / 2)
      total += conv(h, w, channels[i - 1], c)
    se = max(c // 4, 4)
    total += cells * (2 * conv(h, w, c, c) + 2 * (c * se + se * c))
  return total + 2 * channels[-1] * num_outputs


def point_flops(model) -> int:
  """Forward FLOPs of the scene function per 3-D point."""
  p = 3 * (2 * model.position_frequencies + 1)
  w, depth = model.mlp_width, model.mlp_depth
  trunk = p * w + (depth - 1) * w * w
  heads = w + w * w + w * (w // 2) + (w // 2) * 3  # density, bottleneck, view (its point part), rgb
  total = 2 * (trunk + heads)
  if model.latent == "grid":
    total += depth * 2 * model.latent_shape[-1] * 2 * w  # FiLM from each point's interpolated latent
  return total


def ray_flops(model) -> int:
  """Forward FLOPs of the scene function per ray and pass: the view layer's direction part (``ViewLayer``)."""
  return 2 * 3 * (2 * model.direction_frequencies + 1) * (model.mlp_width // 2)


def scene_flops(model) -> int:
  """Forward FLOPs run once per scene per rendering pass (conditioning, background)."""
  w, depth, d = model.mlp_width, model.mlp_depth, model.latent_dim
  background = 2 * (d * 64 + 64 * 3)
  if model.latent == "global":
    return depth * 2 * d * 2 * w + background
  return background


def grid_head_flops(model) -> int:
  """Forward FLOPs of the grid latent's per-view heads: per cell, lifted feature (C, + 3 colours with
  colour_features) + 4 -> C -> 2 D; the background token's (if any), pooled feature -> C -> 2 D."""
  c = model.encoder_channels[-1]
  f = c + 3 * model.colour_features
  token = 2 * (f * c + c * 2 * model.latent_dim) if model.background_token else 0
  return model.grid_size ** 3 * 2 * ((f + 4) * c + c * 2 * model.latent_dim) + token


def prior_flops(model) -> int:
  """Forward FLOPs of the factor prior's projections of one scene's latent onto its k factors (2 L k each: the
  KL, its two sides and the importance ratio; its Woodbury factors, once per step, are ``prior_step_flops``);
  0 with the independent prior."""
  return 4 * 2 * math.prod(model.latent_shape) * model.prior_rank if model.factor else 0


def prior_step_flops(model) -> int:
  """Forward FLOPs of the factor prior's Woodbury factors (``fitted_prior.woodbury``: 4 L k^2), computed once
  per step whatever the batch; 0 with the other priors."""
  return 4 * math.prod(model.latent_shape) * model.prior_rank ** 2 if model.factor else 0


def train_step_flops(model, batch_size: int, max_context: int, height: int, width: int, num_rays: int,
                     coarse_grad: bool = True) -> dict:
  """Matmul FLOPs of one training step, and its parts (forward). ``coarse_grad=False`` (``loss.coarse_weight``
  0): the coarse pass runs forward only, 1 x its forward instead of 3 x."""
  if model.latent == "grid":
    per_view = encoder_flops(height, width, model.encoder_channels, model.encoder_cells, 0) + grid_head_flops(model)
  else:
    per_view = encoder_flops(height, width, model.encoder_channels, model.encoder_cells,
                             2 * math.prod(model.latent_shape))
  enc = batch_size * max_context * per_view
  rays = lambda samples: batch_size * num_rays * (samples * point_flops(model) + ray_flops(model))  # one pass
  coarse = rays(model.num_coarse)
  pts = coarse + rays(model.num_fine)  # coarse and fine passes
  per_scene = batch_size * (2 * scene_flops(model) + prior_flops(model)) + prior_step_flops(model)
  forward = enc + pts + per_scene
  return {"train_step": 3 * forward - (0 if coarse_grad else 2 * coarse), "forward": forward,
          "encoder_forward": enc, "scene_function_forward": pts, "per_scene_forward": per_scene}


def render_flops(model, num_rays: int) -> int:
  """Forward FLOPs of rendering ``num_rays`` rays (coarse and fine passes) from a latent."""
  return (num_rays * ((model.num_coarse + model.num_fine) * point_flops(model) + 2 * ray_flops(model))
          + 2 * scene_flops(model))
