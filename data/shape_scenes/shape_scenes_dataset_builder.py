"""shape_scenes in the TFDS dataset-folder layout (for ``tfds build data/shape_scenes``,
which needs TensorFlow). The builder is ``nerf_vae_jax.data.shape_scenes``."""

from nerf_vae_jax.data.shape_scenes import ShapeScenes as Builder  # noqa: F401
