"""The standard TFDS builder test (needs TensorFlow, which this project does not
install: the project's own tests are in tests/test_dataset.py)."""

import tensorflow_datasets as tfds

from nerf_vae_jax.data import shape_scenes


class ShapeScenesTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = shape_scenes.ShapeScenes
  BUILDER_CONFIG_NAMES_TO_TEST = ["tiny"]
  SPLITS = {"train": 512, "test": 64, "test_ood": 64}
  SKIP_CHECKSUMS = True


if __name__ == "__main__":
  tfds.testing.test_main()
