"""An analytic ray tracer for shape scenes, in JAX (jit-compiled, batched).

Every shape is the intersection of a convex *quadric solid* and an axis-aligned
*box* in the object's local frame, so one branch-free routine intersects all of
them (no per-shape switch, which would be evaluated for every shape under vmap):

  shape     quadric f(p) = A (x^2 + y^2) + B z^2 + C z + D <= 0     box
  sphere    x^2 + y^2 + z^2 - s^2                                     [-s, s]^3
  cube      -1 (everywhere inside)                                     [-s, s]^3
  cylinder  x^2 + y^2 - s^2                                            [-s, s]^3 (caps)
  cone      x^2 + y^2 - ((s - z) / 2)^2   (apex at z = s)              [-s, s]^3 (base)

A ray enters the object at the later of its entries into the two solids and
leaves at the earlier exit. Shading is Lambertian under one directional light
plus ambient, with hard shadows from a shadow ray; colour is supersampled on a
k x k grid of rays inside each pixel on an edge (adaptive: see
``_supersample_edges``), while depth and mask come from the ray through the
pixel centre (so they agree exactly with ``geometry.pixel_rays``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from nerf_vae_jax import geometry

_EPS = 1e-9
_SHADOW_OFFSET = 1e-3  # shadow rays start this far off the surface (no acne)


def shape_coefficients(shape, size):
  """Quadric coefficients (A, B, C, D), each [...], of shapes [...] of sizes [...].

  The cube's quadric is a sphere of radius 4 s, which holds the whole box, so
  the box alone decides where a ray meets it.
  """
  s = size
  one, zero = jnp.ones_like(s), jnp.zeros_like(s)
  table = jnp.stack([
      jnp.stack([one, one, zero, -s * s], -1),  # sphere
      jnp.stack([one, one, zero, -16.0 * s * s], -1),  # cube (see above)
      jnp.stack([one, zero, zero, -s * s], -1),  # cylinder
      jnp.stack([one, -0.25 * one, 0.5 * s, -0.25 * s * s], -1),  # cone
  ], -1)  # [..., 4 coefficients, 4 shapes]
  coef = jnp.sum(table * jax.nn.one_hot(shape, 4, dtype=s.dtype)[..., None, :], axis=-1)
  return tuple(coef[..., i] for i in range(4))


# Rays are kept as structures of arrays: (x, y, z) tuples of [R] arrays, so
# every operation runs along the long ray axis (a [R, N, 3] layout puts the
# tiny axes innermost and runs several times slower on the CPU).


def _to_local(v, cos, sin):
  """Rotates a vector (x, y, z) by -rotation about z."""
  x, y, z = v
  return cos * x + sin * y, -sin * x + cos * y, z


def _hit_object(o, d, coef, half):
  """Where rays enter one object, in its local frame.

  Args:
    o, d: local ray origins and directions, (x, y, z) tuples of [R].
    coef: (A, B, C, D) quadric coefficients (scalars or [R]); half: box half-extent.

  Returns:
    (enter, exit, from_quadric): distances [R] (enter > exit on a miss) and
    whether the entry point lies on the quadric (else on a box face).
  """
  A, B, C, D = coef
  (ox, oy, oz), (dx, dy, dz) = o, d
  a = A * (dx * dx + dy * dy) + B * dz * dz
  b = A * (ox * dx + oy * dy) + B * oz * dz + 0.5 * C * dz
  c = A * (ox * ox + oy * oy) + B * oz * oz + C * oz + D
  disc = b * b - a * c
  sq = jnp.sqrt(jnp.maximum(disc, 0.0))
  # a == 0 only for a vertical ray along a cylinder (or a ray parallel to a
  # cone's side); a tiny positive a then gives the right limit: roots far away
  # on both sides when inside (c < 0), no real roots when outside.
  inv_a = 1.0 / jnp.where(jnp.abs(a) < _EPS, _EPS, a)
  t0, t1 = (-b - sq) * inv_a, (-b + sq) * inv_a
  real = disc >= 0
  inf = jnp.inf
  # a > 0: inside between the roots. a < 0 (a cone crossed more steeply than
  # its side): inside beyond the roots; keep the half below the apex.
  q_enter = jnp.where(a > 0, jnp.where(real, t0, inf), jnp.where(real & (dz < 0), t0, -inf))
  q_exit = jnp.where(a > 0, jnp.where(real, t1, -inf), jnp.where(real & (dz >= 0), t1, inf))
  b_lo, b_hi = [], []
  for oi, di in zip(o, d):
    inv = 1.0 / jnp.where(jnp.abs(di) < _EPS, _EPS, di)
    ta, tb = (-half - oi) * inv, (half - oi) * inv
    b_lo.append(jnp.minimum(ta, tb))
    b_hi.append(jnp.maximum(ta, tb))
  box_enter = jnp.maximum(jnp.maximum(b_lo[0], b_lo[1]), b_lo[2])
  box_exit = jnp.minimum(jnp.minimum(b_hi[0], b_hi[1]), b_hi[2])
  enter = jnp.maximum(q_enter, box_enter)
  exit_ = jnp.minimum(q_exit, box_exit)
  return enter, exit_, (q_enter >= box_enter, b_lo)


def _objects(objects):
  """Per-object constants: quadric coefficients, half-extent, cos and sin."""
  coef = shape_coefficients(objects["shape"], objects["size"])
  return coef, objects["size"], jnp.cos(objects["rotation"]), jnp.sin(objects["rotation"])


def nearest_hit(origins, directions, objects, t_min=0.0):
  """Nearest ray-object intersection.

  Args:
    origins, directions: (x, y, z) tuples of [R] world rays, unit directions.
    objects: dict with shape int [N], position [N, 3], size [N], rotation [N],
      valid bool [N].
    t_min: hits closer than this are ignored.

  Returns:
    (t, index): t [R] distance to the nearest surface (inf on a miss) and
    index int32 [R] of the object hit (0 on a miss).
  """
  coef, half, cos, sin = _objects(objects)
  ts = []
  for k in range(objects["shape"].shape[0]):  # few objects: unrolled
    pos = objects["position"][k]
    o = _to_local(tuple(origins[i] - pos[i] for i in range(3)), cos[k], sin[k])
    d = _to_local(directions, cos[k], sin[k])
    enter, exit_, _ = _hit_object(o, d, tuple(c[k] for c in coef), half[k])
    ts.append(jnp.where((enter <= exit_) & (enter > t_min) & objects["valid"][k], enter, jnp.inf))
  # Materialise the per-object distances once: without the barrier XLA fuses
  # the intersections into each of the two consumers below and runs them twice.
  ts = jax.lax.optimization_barrier(jnp.stack(ts))  # [N, R]
  best_t = jnp.min(ts, axis=0)
  best_k = jnp.zeros(best_t.shape, jnp.int32)
  for k in range(ts.shape[0] - 1, -1, -1):  # the first object at the minimum wins
    best_k = jnp.where(ts[k] == best_t, k, best_k)
  return best_t, best_k


def _select(index, values):
  """values[index] for index [R] into a short vector values [N]; selects are
  much faster than a gather on the CPU."""
  out = jnp.full(index.shape, values[0])
  for k in range(1, values.shape[0]):
    out = jnp.where(index == k, values[k], out)
  return out


def surface_normal(origins, directions, t, index, objects):
  """Outward world-space unit normal (x, y, z) of [R] where rays hit ``index``."""
  coef, half, cos, sin = jax.tree.map(lambda p: _select(index, p), _objects(objects))
  pos = [_select(index, objects["position"][:, i]) for i in range(3)]
  o = _to_local(tuple(origins[i] - pos[i] for i in range(3)), cos, sin)
  d = _to_local(directions, cos, sin)
  _, _, (on_quadric, b_lo) = _hit_object(o, d, coef, half)
  A, B, C, _ = coef
  t = jnp.where(jnp.isfinite(t), t, 0.0)
  p = tuple(oi + t * di for oi, di in zip(o, d))
  # Quadric: the gradient of f. Box: the face of the slab entered last.
  x_face = (b_lo[0] >= b_lo[1]) & (b_lo[0] >= b_lo[2])
  y_face = ~x_face & (b_lo[1] >= b_lo[2])
  faces = (x_face, y_face, ~x_face & ~y_face)  # (an argmax is slow here)
  n = [jnp.where(on_quadric, g, jnp.where(f, -jnp.sign(di), 0.0))
       for g, f, di in zip((2 * A * p[0], 2 * A * p[1], 2 * B * p[2] + C), faces, d)]
  norm = jnp.maximum(jnp.sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]), _EPS)
  nx, ny, nz = (v / norm for v in n)
  return cos * nx - sin * ny, sin * nx + cos * ny, nz


def shade(origins, directions, scene, ambient):
  """Colour, depth and object index of rays in one scene.

  Args:
    origins, directions: [R, 3] world rays (unit directions).
    scene: one scene's arrays (see ``render``).

  Returns:
    rgb [R, 3] in [0, 1], depth [R] (0 on background) and mask int32 [R]
    (0 background, k + 1 for object k).
  """
  o = tuple(origins[:, i] for i in range(3))
  d = tuple(directions[:, i] for i in range(3))
  # The barriers stop XLA from fusing (and so recomputing) the whole
  # intersection into every consumer of its results: 2-3x faster on the CPU.
  t, k = jax.lax.optimization_barrier(nearest_hit(o, d, scene))
  hit = jnp.isfinite(t)
  n = jax.lax.optimization_barrier(surface_normal(o, d, t, k, scene))
  light = scene["light_direction"]
  t_hit = jnp.where(hit, t, 0.0)
  shadow_o = tuple(o[i] + t_hit * d[i] + _SHADOW_OFFSET * n[i] for i in range(3))
  shadow_d = tuple(jnp.full_like(t, light[i]) for i in range(3))
  t_shadow, _ = jax.lax.optimization_barrier(nearest_hit(shadow_o, shadow_d, scene))
  lit = ~jnp.isfinite(t_shadow)
  lambert = jnp.maximum(n[0] * light[0] + n[1] * light[1] + n[2] * light[2], 0.0) * lit
  shading = ambient + (1.0 - ambient) * lambert
  rgb = jnp.stack([jnp.where(hit, _select(k, scene["color"][:, i]) * shading, scene["background"][i])
                   for i in range(3)], -1)
  mask = jnp.where(hit, k + 1, 0).astype(jnp.int32)
  return jnp.clip(rgb, 0.0, 1.0), t_hit, mask


EDGE_BUDGET = 0.25  # fraction of a view's pixels that may be supersampled
_EDGE_COLOUR_STEP = 4.0 / 255.0  # a colour step larger than this between neighbours marks an edge


def _supersample_edges(rgb, mask, intrinsics, cam_to_world, scene, height, width, k, ambient):
  """Anti-aliasing where it is needed: k x k rays in each edge pixel.

  A pixel is on an edge when its centre ray's object index or colour differs
  from a 4-neighbour's (silhouettes, shadow borders, creases); elsewhere the
  colour is smooth and the centre ray alone is the pixel's average to well
  under one grey level. Up to ``EDGE_BUDGET`` of the pixels (a fixed count,
  so shapes stay static under jit; the most contrasted first) get the mean of
  a k x k grid of rays inside the pixel, as full supersampling would: about
  2.5x fewer rays than supersampling every pixel.

  Args:
    rgb: [H W, 3] centre-ray colours; mask: [H W] object indices.

  Returns:
    rgb [H W, 3] with the edge pixels replaced by their supersampled colour.
  """
  m = mask.reshape(height, width)
  c = rgb.reshape(height, width, 3)
  score = jnp.zeros((height, width), jnp.float32)
  for axis in (0, 1):
    for shift in (1, -1):
      m2, c2 = jnp.roll(m, shift, axis), jnp.roll(c, shift, axis)
      step = (m != m2) | (jnp.max(jnp.abs(c - c2), axis=-1) > _EDGE_COLOUR_STEP)
      # roll wraps around: the image border has no neighbour there.
      border = jnp.arange((height, width)[axis]) == (0 if shift == 1 else (height, width)[axis] - 1)
      score = score + (step & ~jnp.expand_dims(border, 1 - axis)) * (1.0 + jnp.max(jnp.abs(c - c2), axis=-1))
  budget = max(1, int(EDGE_BUDGET * height * width))
  top, idx = jax.lax.top_k(score.reshape(-1), budget)
  # The k x k sub-pixel rays of the chosen pixels: on a k-times finer grid,
  # pixel (i, j) covers fine pixels (k i .. k i + k-1, k j .. k j + k-1).
  o, d = geometry.pixel_rays(intrinsics * k, cam_to_world, height * k, width * k)
  sub = lambda x: x.reshape(height, k, width, k, 3).transpose(0, 2, 1, 3, 4).reshape(height * width, k * k, 3)[idx]
  fine, _, _ = shade(sub(o).reshape(-1, 3), sub(d).reshape(-1, 3), scene, ambient)
  fine = fine.reshape(budget, k * k, 3).mean(axis=1)
  return rgb.at[idx].set(jnp.where((top > 0)[:, None], fine, rgb[idx]))


@functools.partial(jax.jit, static_argnames=("height", "width", "supersample", "ambient"))
def render(scenes, *, height: int, width: int, supersample: int, ambient: float):
  """Renders every view of a batch of scenes.

  Args:
    scenes: dict of arrays with leading batch dimension B (from
      ``sampler.stack``): objects [B, N, ...], background [B, 3],
      light_direction [B, 3], intrinsics [B, V, 4], cam_to_world [B, V, 4, 4].
    height, width: image size; supersample: k (k x k colour rays per pixel).

  Returns:
    images uint8 [B, V, H, W, 3], depths float32 [B, V, H, W] (distance along
    the unit ray to the first hit, 0 on background), masks uint8 [B, V, H, W].
  """
  k = supersample

  def one_view(scene, intrinsics, cam_to_world):
    o, d = geometry.pixel_rays(intrinsics, cam_to_world, height, width)
    rgb, depth, mask = shade(o.reshape(-1, 3), d.reshape(-1, 3), scene, ambient)
    if k > 1:
      rgb = _supersample_edges(rgb, mask, intrinsics, cam_to_world, scene, height, width, k, ambient)
    image = jnp.round(rgb.reshape(height, width, 3) * 255.0).astype(jnp.uint8)
    return image, depth.reshape(height, width), mask.reshape(height, width).astype(jnp.uint8)

  # One view at a time (a loop, not vmap) keeps each view's rays in cache:
  # about 2x faster on the CPU than one batched computation.
  def one_scene(scene):
    return jax.lax.map(lambda cam: one_view(scene, *cam), (scene["intrinsics"], scene["cam_to_world"]))

  return jax.lax.map(one_scene, scenes)
