"""The per-scene NeRF baseline: NeRF-VAE's scene function without a latent,
trained from scratch on the views of one scene.

Many scenes (or one scene with different view sets) are fitted at once: every
function here works on a stack of N independent problems, with parameters
stacked on a leading axis and ``jax.vmap`` over it, so the CPU or accelerator
sees one large batch instead of N small ones.

Shapes: N problems, V views of H x W pixels, R rays per problem per step.
"""

from __future__ import annotations

import functools
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from nerf_vae_jax import geometry, image_metrics, rendering
from nerf_vae_jax.models import scene_function
from nerf_vae_jax.models.scene_function import SceneFunction


class NeRF(nn.Module):
  """A NeRF of one scene: coarse and fine passes, a learned background colour."""
  field: SceneFunction  # conditioning "none": no latent
  num_coarse: int = 32
  num_fine: int = 32

  @nn.compact
  def __call__(self, origins, directions, key, randomized: bool = True):
    """origins, directions [R, 3] -> {"coarse", "fine"}: dicts of rgb [R, 3], depth, acc [R]."""
    background = jax.nn.sigmoid(self.param("background", nn.initializers.zeros, (3,)))
    out = rendering.render_coarse_fine(
        lambda x, d, noise: self.field(x, d, None, noise), background[None, None], origins[None],
        directions[None], key, num_coarse=self.num_coarse, num_fine=self.num_fine,
        scene_radius=self.field.scene_radius, randomized=randomized)
    return jax.tree.map(lambda x: x[0], out)


def from_config(model_config, scene_radius: float) -> NeRF:
  """The NeRF with the scene-function settings of a NeRF-VAE ``config.model``, without the latent."""
  field = scene_function.of_settings(model_config, conditioning="none", scene_radius=scene_radius,
                                     dtype=scene_function.dtype_of(model_config.dtype))
  return NeRF(field=field, num_coarse=model_config.num_coarse, num_fine=model_config.num_fine)


def fit(model: NeRF, images, intrinsics, cam_to_world, num_views, key, *, steps: int, num_rays: int = 1024,
        learning_rate: float = 5e-3, coarse_weight: float = 0.1, log_every: int = 0):
  """Fits N independent NeRFs, problem n to the first ``num_views[n]`` of its views.

  Args:
    images: uint8 [N, V, H, W, 3]; intrinsics [N, V, 4]; cam_to_world
      [N, V, 4, 4]; num_views: int [N], 1 <= num_views[n] <= V.
    steps: Adam steps (cosine decay to 1% of ``learning_rate``), each on
      ``num_rays`` random pixels of the problem's training views.
    log_every: print the mean training PSNR every so many steps (0: never).

  Returns:
    (params stacked over N, training PSNR [N] over the last window of steps:
    ``log_every`` steps, or the last tenth of them).
  """
  n, v, h, w, _ = images.shape
  origins, directions = geometry.pixel_rays(intrinsics, cam_to_world, h, w)  # [N, V, H, W, 3], once
  colours = images.astype(jnp.float32) / 255.0
  tx = optax.adam(optax.cosine_decay_schedule(learning_rate, steps, alpha=0.01))
  k_init, k_train = jax.random.split(key)
  dummy = jnp.zeros((1, 3))
  params = jax.jit(jax.vmap(lambda k: model.init(k, dummy, dummy + 1.0, k)))(jax.random.split(k_init, n))
  # The background starts at the median colour of the training views (most of
  # their pixels): from the default grey, Adam's small steps take longer than
  # a whole fit to reach a dark or saturated background, and the MLP paints it
  # with density instead (seen on half the tiny test scenes).
  train_views = jnp.arange(v)[None, :] < jnp.asarray(num_views)[:, None]  # [N, V]
  median = jnp.nanmedian(jnp.where(train_views[..., None, None, None], colours, jnp.nan).reshape(n, -1, 3), axis=1)
  params["params"]["background"] = jax.scipy.special.logit(jnp.clip(median, 0.02, 0.98))
  opt_state = jax.jit(jax.vmap(tx.init))(params)

  def loss_fn(p, o, d, c, views, key):
    kv, kp, kr = jax.random.split(key, 3)
    view = jax.random.randint(kv, (num_rays,), 0, views)
    pix = jax.random.randint(kp, (num_rays,), 0, h * w)
    pick = lambda x: x[view, pix // w, pix % w]
    out = model.apply(p, pick(o), pick(d), kr)
    target = pick(c)
    mse = jnp.mean(jnp.square(out["fine"]["rgb"] - target))
    return mse + coarse_weight * jnp.mean(jnp.square(out["coarse"]["rgb"] - target)), mse

  def one_problem(p, s, o, d, c, views, key):
    (_, mse), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, o, d, c, views, key)
    updates, s = tx.update(grads, s, p)
    return optax.apply_updates(p, updates), s, mse

  # The rays are arguments, not closed-over constants: XLA would embed them in the program.
  @functools.partial(jax.jit, static_argnums=3, donate_argnums=(0, 1))
  def run(params, opt_state, start, length, data):
    def body(carry, step):
      p, s = carry
      keys = jax.random.split(jax.random.fold_in(k_train, step), n)
      p, s, mse = jax.vmap(one_problem)(p, s, *data, keys)
      return (p, s), mse
    (params, opt_state), mse = jax.lax.scan(body, (params, opt_state), start + jnp.arange(length))
    return params, opt_state, jnp.mean(mse, axis=0)

  data = (origins, directions, colours, jnp.asarray(num_views))
  window = log_every or max(1, steps // 10)
  done, mse = 0, None
  while done < steps:
    length = min(window, steps - done)
    params, opt_state, mse = run(params, opt_state, done, length, data)
    done += length
    if log_every:
      print(f"  NeRF step {done}/{steps}: training PSNR {float(jnp.mean(image_metrics.psnr(mse, jnp))):.2f} dB "
            f"(mean of {n})", flush=True)
  return params, image_metrics.psnr(mse, jnp)


def render_views(model: NeRF, params, intrinsics, cam_to_world, height: int, width: int, chunk: int = 4096):
  """Renders cameras [N, V', ...] with N stacked NeRFs: rgb [N, V', H, W, 3], depth, acc [N, V', H, W]."""
  def render_rays(o, d):  # [N, n, 3]
    def one(p, o, d):
      out = model.apply(p, o, d, jax.random.PRNGKey(0), False)["fine"]
      return {k: out[k] for k in ("rgb", "depth", "acc")}
    return jax.vmap(one)(params, o, d)

  return rendering.render_cameras(render_rays, intrinsics, cam_to_world, height, width, chunk)
