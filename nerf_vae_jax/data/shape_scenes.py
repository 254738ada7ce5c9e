"""shape_scenes: procedural multi-view scenes of geometric shapes (NeRF-VAE data).

Each example is one scene seen from V cameras: images, depths, instance masks
and exact camera geometry. Everything is generated here (no download) by the
JAX ray tracer in ``nerf_vae_jax.scenes``; a scene is a pure function of
(config seed, split, index). Conventions: see ``nerf_vae_jax.geometry``.

Importing this module registers the builder with TFDS as ``shape_scenes``
(``tfds.builder('shape_scenes/tiny', data_dir=...)``). Build without
TensorFlow:  python -m nerf_vae_jax.data.build shape_scenes/tiny --data_dir=DIR
(the folder data/shape_scenes keeps the TFDS layout for ``tfds build``, which
needs TensorFlow).
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from nerf_vae_jax.scenes import shards, specs


class ShapeScenesConfig(tfds.core.BuilderConfig):
  """A variant of the dataset: see ``nerf_vae_jax.scenes.specs.SPECS``."""

  def __init__(self, spec: specs.SceneSpec):
    super().__init__(
        name=spec.name,
        description=(f"{spec.height}x{spec.width}, {spec.num_views} views, splits "
                     + ", ".join(f"{k}={v}" for k, v in spec.splits.items())))
    self.spec = spec


class ShapeScenes(tfds.core.ShardBasedBuilder):
  """DatasetBuilder for shape_scenes.

  Shard-based (scenes in index order, ``shards.SHARD_SIZE`` per record
  file) rather than generator-based: TFDS's shuffler spills splits over 1 GB
  to temporary files through TensorFlow's file API, which this project does
  not install; the input pipeline shuffles anyway.
  """

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {
      "1.0.0": "Initial release.",
      "1.1.0": "Faster renderer: the same scenes, cameras, depths and masks; anti-aliased edge pixels "
               "may differ by a grey level; scenes stored in index order.",
  }
  BUILDER_CONFIGS = [ShapeScenesConfig(s) for s in specs.SPECS.values()]
  DEFAULT_CONFIG_NAME = specs.DEFAULT

  def __init__(self, *, pool=None, **kwargs):
    """``pool``: rendering processes (``shards.render_pool``); None renders in this process."""
    super().__init__(**kwargs)
    self._pool = pool

  def _info(self) -> tfds.core.DatasetInfo:
    spec = self.builder_config.spec
    v, h, w = spec.num_views, spec.height, spec.width
    f32 = np.float32
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "scene_id": np.int64,
            "images": tfds.features.Sequence(tfds.features.Image(shape=(h, w, 3), encoding_format="png"), length=v),
            # Depth along the unit ray (0 on background), quantised:
            # uint16 = round(depth * depth_scale), see metadata.
            "depths": tfds.features.Tensor(shape=(v, h, w), dtype=np.uint16, encoding=tfds.features.Encoding.ZLIB),
            # 0 background, k + 1 for object k.
            "masks": tfds.features.Tensor(shape=(v, h, w), dtype=np.uint8, encoding=tfds.features.Encoding.ZLIB),
            "intrinsics": tfds.features.Tensor(shape=(v, 4), dtype=f32),
            "cam_to_world": tfds.features.Tensor(shape=(v, 4, 4), dtype=f32),
            "background": tfds.features.Tensor(shape=(3,), dtype=f32),
            "light_direction": tfds.features.Tensor(shape=(3,), dtype=f32),
            "objects": tfds.features.Sequence({
                "shape": tfds.features.ClassLabel(names=specs.SHAPES),
                "position": tfds.features.Tensor(shape=(3,), dtype=f32),
                "size": tfds.features.Tensor(shape=(), dtype=f32),
                "rotation": tfds.features.Tensor(shape=(), dtype=f32),
                "color": tfds.features.Tensor(shape=(3,), dtype=f32),
            }),
        }),
        supervised_keys=None,
        homepage="https://arxiv.org/abs/2104.00587",
        metadata=tfds.core.MetadataDict(
            scene_radius=spec.scene_radius, depth_scale=spec.depth_scale,
            floor_z=specs.FLOOR_Z, fov_degrees=spec.fov_degrees),
    )

  def _shard_iterators_per_split(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # nothing to download
    spec = self.builder_config.spec
    return {split: shards.shard_generators(spec.name, split, n, self._pool) for split, n in spec.splits.items()}
