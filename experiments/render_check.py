"""The ray tracer on the default device (a GPU, say) against the CPU: speed, and whether the bytes agree.

  python -m experiments.render_check [--spec=64px_mini] [--split=test] [--chunks=4] [--json=FILE]

Renders ``--chunks`` chunks of scenes (``scenes.shards.CHUNK`` each) as the
dataset builder does (``shards.render_chunk``: PNG images, quantised depths,
masks) on the default device and on the host's CPU, and reports scenes/s on
each (after one chunk that compiles) and how many images, depth maps and masks
differ, with the largest pixel difference. A dataset built on the GPU has the
CPU build's bytes only where this says 0 differ.
"""

import io
import json
import sys
import time

import jax
import numpy as np
from absl import app, flags
from PIL import Image

from nerf_vae_jax.scenes import shards

flags.DEFINE_string("spec", "64px_mini", "shape_scenes config whose scenes are rendered.")
flags.DEFINE_string("split", "test", "Split whose first scenes are rendered.")
flags.DEFINE_integer("chunks", 4, "Chunks of scenes to render on each device (after a compiling one).")
flags.DEFINE_string("json", None, "Also write the results to this JSON file.")
FLAGS = flags.FLAGS


def _render(device, spec: str, split: str, chunks: int):
  with jax.default_device(device):
    shards.render_chunk(spec, split, 0, shards.CHUNK)  # compiles
    t0 = time.perf_counter()
    out = [ex for c in range(chunks) for ex in shards.render_chunk(spec, split, c * shards.CHUNK,
                                                                    (c + 1) * shards.CHUNK)]
    return out, chunks * shards.CHUNK / (time.perf_counter() - t0)


def compare(a: list, b: list) -> dict:
  """Counts of differing PNG images, depth maps and masks between two renders of the same scenes."""
  images = depths = masks = 0
  max_pixel = 0
  for (_, x), (_, y) in zip(a, b):
    for p, q in zip(x["images"], y["images"]):
      if p != q:
        images += 1
        d = np.abs(np.asarray(Image.open(io.BytesIO(p)), np.int16) - np.asarray(Image.open(io.BytesIO(q)), np.int16))
        max_pixel = max(max_pixel, int(d.max()))
    depths += int(np.sum(np.any(x["depths"] != y["depths"], axis=(1, 2))))
    masks += int(np.sum(np.any(x["masks"] != y["masks"], axis=(1, 2))))
  views = sum(len(x["images"]) for _, x in a)
  return {"views": views, "images_differing": images, "depths_differing": depths, "masks_differing": masks,
          "max_pixel_difference": max_pixel}


def main(argv):
  del argv
  default, cpu = jax.devices()[0], jax.devices("cpu")[0]
  a, rate_default = _render(default, FLAGS.spec, FLAGS.split, FLAGS.chunks)
  b, rate_cpu = _render(cpu, FLAGS.spec, FLAGS.split, FLAGS.chunks)
  r = {"device": default.device_kind, "spec": FLAGS.spec, "scenes": len(a),
       "scenes_per_s": {"default_device": rate_default, "cpu_one_process": rate_cpu}, **compare(a, b)}
  print(json.dumps(r, indent=1))
  if FLAGS.json:
    with open(FLAGS.json, "w") as f:
      json.dump(r, f, indent=1)


if __name__ == "__main__":
  sys.exit(app.run(main))
