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
plus ambient, with hard shadows from a shadow ray. ``render`` traces one ray
through each pixel centre (depth and mask come from it, so they agree exactly
with ``geometry.pixel_rays``), then anti-aliases the colour of every pixel on
an edge with a k x k grid of rays inside it (see ``edge_pixels``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

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
  shape = jnp.broadcast_shapes(*(jnp.shape(x) for x in (*origins, *directions)))

  def distance(k):
    pos = objects["position"][k]
    o = _to_local(tuple(origins[i] - pos[i] for i in range(3)), cos[k], sin[k])
    d = _to_local(directions, cos[k], sin[k])
    enter, exit_, _ = _hit_object(o, d, tuple(c[k] for c in coef), half[k])
    return jnp.where((enter <= exit_) & (enter > t_min), enter, jnp.inf)

  # Scenes hold 1..N objects (2.5 on average): a cond skips the absent ones'
  # work (under vmap it becomes a select and computes both, correctly).
  ts = [jax.lax.cond(objects["valid"][k], lambda k=k: distance(k), lambda: jnp.full(shape, jnp.inf))
        for k in range(objects["shape"].shape[0])]  # few objects: unrolled
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
    origins: (x, y, z) world ray origins, each [R], or scalars when all rays
      share one (a camera's rays: the intersections then do less work per ray).
    directions: (x, y, z) unit directions, each [R].
    scene: one scene's arrays (see ``render``).

  Rays come as separate component arrays, never sliced out of one [R, 3]
  buffer: XLA:CPU runs the tracer 2-3x slower on such slices.

  Returns:
    rgb [R, 3] in [0, 1], depth [R] (0 on background) and mask int32 [R]
    (0 background, k + 1 for object k).
  """
  o, d = tuple(origins), tuple(directions)
  # The barriers stop XLA from fusing (and so recomputing) the whole
  # intersection into every consumer of its results: 2-3x faster on the CPU.
  t, k = jax.lax.optimization_barrier(nearest_hit(o, d, scene))
  hit = jnp.isfinite(t)
  n = jax.lax.optimization_barrier(surface_normal(o, d, t, k, scene))
  light = scene["light_direction"]
  t_hit = jnp.where(hit, t, 0.0)
  shadow_o = tuple(o[i] + t_hit * d[i] + _SHADOW_OFFSET * n[i] for i in range(3))
  shadow_d = tuple(light[i] for i in range(3))  # shared by all shadow rays
  t_shadow, _ = jax.lax.optimization_barrier(nearest_hit(shadow_o, shadow_d, scene))
  lit = ~jnp.isfinite(t_shadow)
  lambert = jnp.maximum(n[0] * light[0] + n[1] * light[1] + n[2] * light[2], 0.0) * lit
  shading = ambient + (1.0 - ambient) * lambert
  rgb = jnp.stack([jnp.where(hit, _select(k, scene["color"][:, i]) * shading, scene["background"][i])
                   for i in range(3)], -1)
  mask = jnp.where(hit, k + 1, 0).astype(jnp.int32)
  return jnp.clip(rgb, 0.0, 1.0), t_hit, mask


_EDGE_COLOUR_STEP = 4.0 / 255.0  # a colour step larger than this between neighbours marks an edge
_RAY_BLOCK = 2048  # rays shaded at a time: a block's intermediates stay in cache


def edge_pixels(rgb, mask):
  """Pixels whose colour is not smooth: bool [H, W].

  A pixel is on an edge when its centre ray's object index differs from a
  4-neighbour's, or its colour by more than ``_EDGE_COLOUR_STEP`` in a channel
  (silhouettes, shadow borders, creases). Elsewhere the colour varies slowly
  and the centre ray alone is the pixel's average to well under a grey level.

  Args:
    rgb: float [H, W, 3] centre-ray colours; mask: int [H, W].
  """
  edge = jnp.zeros(mask.shape, bool)
  for axis in (0, 1):  # rows, columns
    step = jnp.diff(mask, axis=axis) != 0
    step |= jnp.max(jnp.abs(jnp.diff(rgb, axis=axis)), axis=-1) > _EDGE_COLOUR_STEP
    pad = [(0, 0), (0, 0)]
    pad[axis] = (1, 0)
    edge |= jnp.pad(step, pad)  # both pixels of a step are on the edge
    pad[axis] = (0, 1)
    edge |= jnp.pad(step, pad)
  return edge


_find_edges = jax.jit(jax.vmap(jax.vmap(edge_pixels)))  # [B, V, H, W, 3], [B, V, H, W] -> [B, V, H, W]


@functools.partial(jax.jit, static_argnames=("height", "width"))
def primary_hits(scenes, *, height: int, width: int):
  """The nearest hit of the ray through each pixel centre of every view.

  Args:
    scenes: dict of arrays with leading batch dimension B (see ``render``).

  Returns:
    t float32 [B, V, H, W] (inf on a miss) and index int32 [B, V, H, W] of
    the object hit (see ``nearest_hit``).
  """
  def one_view(scene, intrinsics, cam_to_world):
    _, d = geometry.pixel_rays(intrinsics, cam_to_world, height, width)
    d = jax.lax.optimization_barrier(tuple(d[..., i].reshape(-1) for i in range(3)))  # computed once
    t, k = nearest_hit(tuple(cam_to_world[:3, 3]), d, scene)
    return t.reshape(height, width), k.reshape(height, width)

  # One view at a time (a loop, not vmap) keeps each view's rays in cache:
  # about 2x faster on the CPU than one batched computation.
  def one_scene(scene):
    return jax.lax.map(lambda cam: one_view(scene, *cam), (scene["intrinsics"], scene["cam_to_world"]))

  return jax.lax.map(one_scene, scenes)


@functools.partial(jax.jit, static_argnames=("ambient",))
def shade_blocks(scenes, scene_index, views, x, y, *, ambient: float):
  """Colours of blocks of rays through image points, each block in one scene.

  Args:
    scenes: dict of arrays with leading batch dimension B (see ``render``).
    scene_index: int32 [N], the scene of each block.
    views: int32 [N, R], the view (camera) of each ray.
    x, y: float32 [N, R], the image point of each ray, in pixels.

  Returns:
    rgb float32 [N, R, 3].
  """
  index = (scene_index[:, None], views)
  cam_to_world = scenes["cam_to_world"][index]  # [N, R, 4, 4]
  _, d = geometry.image_rays(scenes["intrinsics"][index], cam_to_world, x[..., None, None], y[..., None, None])
  origins = tuple(cam_to_world[..., i, 3] for i in range(3))
  directions = tuple(d[..., 0, 0, i] for i in range(3))

  def one_block(args):  # R rays at a time: their intermediates stay in cache
    s, o, d = args
    return shade(o, d, jax.tree.map(lambda a: a[s], scenes), ambient)[0]

  return jax.lax.map(one_block, (scene_index, origins, directions))


_CALL_BLOCKS = 8  # blocks per shade_blocks call: one shape, so one compilation


def _shade_points(scenes, points, ambient):
  """Colours of rays through image points, per scene (numpy in and out).

  The rays are packed into blocks of ``_RAY_BLOCK`` (a block holds one
  scene's rays; only each scene's last block is partly padding), and the
  blocks are shaded ``_CALL_BLOCKS`` at a time: one compiled program serves
  every batch.

  Args:
    points: per scene (views int [R_s], x float [R_s], y float [R_s]).

  Returns:
    per scene rgb float32 [R_s, 3].
  """
  counts = [len(v) for v, _, _ in points]
  per_scene = [-(-c // _RAY_BLOCK) for c in counts]
  n = _CALL_BLOCKS * -(-max(1, sum(per_scene)) // _CALL_BLOCKS)
  starts = np.cumsum([0] + per_scene[:-1])  # each scene's first block
  scene_index = np.zeros(n, np.int32)
  views = np.zeros(n * _RAY_BLOCK, np.int32)
  xy = np.zeros((2, n * _RAY_BLOCK), np.float32)  # (padding: any valid ray)
  for s, ((v, x, y), c, m, b) in enumerate(zip(points, counts, per_scene, starts)):
    scene_index[b:b + m] = s
    r = slice(b * _RAY_BLOCK, b * _RAY_BLOCK + c)
    views[r], xy[0, r], xy[1, r] = v, x, y
  blocks = [a.reshape(n, _RAY_BLOCK) for a in (views, xy[0], xy[1])]
  calls = [shade_blocks(scenes, scene_index[i:i + _CALL_BLOCKS], *(a[i:i + _CALL_BLOCKS] for a in blocks),
                        ambient=ambient) for i in range(0, n, _CALL_BLOCKS)]  # (run asynchronously)
  rgb = np.concatenate([np.asarray(c) for c in calls]).reshape(-1, 3)
  return [rgb[b * _RAY_BLOCK:b * _RAY_BLOCK + c] for b, c in zip(starts, counts)]


def render(scenes, *, height: int, width: int, supersample: int, ambient: float):
  """Renders every view of a batch of scenes (numpy in, numpy out).

  Rays are traced where they are needed: (1) the nearest hit of the ray
  through every pixel centre (depth and mask); (2) shading (normal, shadow
  ray, colour) for the centre rays that hit an object (about 14% of them);
  (3) k x k rays for the colour of each pixel on an edge (``edge_pixels``,
  about 11% of the pixels). For k = 2 that is 1.6 rays per pixel on average,
  0.6 of them shaded, instead of 4 shaded rays in every pixel, and the same
  image to half a grey level on average (tests/test_scenes.py). Each scene's
  pixels depend on that scene alone, whatever else is in the batch.

  Args:
    scenes: dict of arrays with leading batch dimension B (from
      ``sampler.stack``): objects [B, N, ...], background [B, 3],
      light_direction [B, 3], intrinsics [B, V, 4], cam_to_world [B, V, 4, 4].
    height, width: image size; supersample: k (k x k colour rays per edge pixel).

  Returns:
    images uint8 [B, V, H, W, 3], depths float32 [B, V, H, W] (distance along
    the unit ray to the first hit, 0 on background), masks uint8 [B, V, H, W].
  """
  scenes = {key: np.asarray(v) for key, v in scenes.items()}
  t, index = (np.asarray(x) for x in primary_hits(scenes, height=height, width=width))
  hit = np.isfinite(t)
  depth = np.where(hit, t, 0.0).astype(np.float32)
  mask = np.where(hit, index + 1, 0).astype(np.int32)
  rgb = np.broadcast_to(scenes["background"][:, None, None, None, :], hit.shape + (3,)).astype(np.float32)

  # (2) Centre rays that hit something.
  where = [np.nonzero(h) for h in hit]  # per scene (views, rows, columns)
  points = [(v, j + 0.5, i + 0.5) for v, i, j in where]
  for s, (w, colour) in enumerate(zip(where, _shade_points(scenes, points, ambient))):
    rgb[s][w] = colour

  # (3) k x k rays in each edge pixel, at offsets (s + 0.5) / k: the rays of
  # the whole image traced at k times the resolution.
  k = supersample
  if k > 1:
    edge = np.asarray(_find_edges(rgb, mask))
    offsets = (np.arange(k, dtype=np.float32) + 0.5) / k
    dx, dy = np.tile(offsets, k), np.repeat(offsets, k)  # [k k]
    where = [np.nonzero(e) for e in edge]
    points = [(np.repeat(v, k * k), (j[:, None] + dx).reshape(-1), (i[:, None] + dy).reshape(-1))
              for v, i, j in where]
    for s, (w, colour) in enumerate(zip(where, _shade_points(scenes, points, ambient))):
      rgb[s][w] = colour.reshape(-1, k * k, 3).mean(axis=1)
  images = np.round(rgb * 255.0).astype(np.uint8)
  return images, depth, mask.astype(np.uint8)
