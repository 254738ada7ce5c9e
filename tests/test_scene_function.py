"""The scene function's FiLM layer: the parameters and the function of ``nn.Dense(2F)`` split in two."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nerf_vae_jax.models import scene_function


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_film_is_a_dense_layer_split_in_two(dtype):
  cond = jax.random.normal(jax.random.PRNGKey(0), (3, 5, 16))
  film = scene_function.FiLM(8, dtype=dtype, kernel_init=nn.initializers.normal(0.5))
  dense = nn.Dense(16, dtype=dtype, kernel_init=nn.initializers.normal(0.5))
  params = film.init(jax.random.PRNGKey(1), cond)
  # The same parameter tree as the Dense it replaces (old checkpoints restore) ...
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, dense.init(jax.random.PRNGKey(1), cond))
  params = jax.tree.map(lambda p: p + jax.random.normal(jax.random.PRNGKey(2), p.shape), params)  # a bias too
  gamma, beta = film.apply(params, cond)
  ref_gamma, ref_beta = jnp.split(dense.apply(params, cond), 2, axis=-1)
  # ... and the same function: the same products, summed in the same order.
  np.testing.assert_array_equal(np.asarray(gamma, np.float32), np.asarray(ref_gamma, np.float32))
  np.testing.assert_array_equal(np.asarray(beta, np.float32), np.asarray(ref_beta, np.float32))
  assert gamma.dtype == beta.dtype == dtype

  def loss(p, layer):
    g, b = layer(p)
    return jnp.sum(jnp.sin(g.astype(jnp.float32)) * jnp.cos(b.astype(jnp.float32)))

  grads = jax.grad(loss)(params, lambda p: film.apply(p, cond))
  ref = jax.grad(loss)(params, lambda p: jnp.split(dense.apply(p, cond), 2, axis=-1))
  tol = 1e-5 if dtype == jnp.float32 else 2e-2
  for g, r in zip(jax.tree.leaves(grads), jax.tree.leaves(ref)):
    np.testing.assert_allclose(g, r, rtol=tol, atol=tol * float(jnp.max(jnp.abs(r))))


def test_view_layer_is_a_dense_layer_of_features_and_the_rays_direction():
  feat = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 5, 8))  # [B, R, S, F]
  d = jax.random.normal(jax.random.PRNGKey(1), (2, 3, 6))  # [B, R, Q]: one per ray
  layer, dense = scene_function.ViewLayer(4), nn.Dense(4)
  params = layer.init(jax.random.PRNGKey(2), feat, d)
  concat = jnp.concatenate([feat, jnp.broadcast_to(d[:, :, None], (2, 3, 5, 6))], -1)
  ref_params = dense.init(jax.random.PRNGKey(2), concat)
  # The same parameters, drawn the same way, as the Dense over the concatenation it replaces ...
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref_params)):
    np.testing.assert_array_equal(a, b)
  params = jax.tree.map(lambda p: p + 1.0, params)  # a bias too
  # ... and the same function.
  np.testing.assert_allclose(layer.apply(params, feat, d), dense.apply(params, concat), rtol=1e-5, atol=1e-5)
