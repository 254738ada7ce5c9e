"""Exports a built dataset's scenes to a standard multi-view format (``formats.py``).

  python -m experiments.export shape_scenes/tiny --format=blender|srn --out=DIR [--splits=train,test]
      [--num_scenes=N] [--data_dir=DIR]

Writes ``DIR/<split>/<scene>/`` (scene = its 6-digit scene_id), the layout
that ``python -m experiments.build multiview/NAME --source=DIR`` reads back:
users can check their own tools against ours, and the round trip is tested.
"""

from __future__ import annotations

from pathlib import Path

from nerf_vae_jax.data import formats, source


def export(name: str, fmt: str, out: str, splits=("train", "test"), num_scenes: int | None = None,
           data_dir: str | None = None) -> Path:
  """Writes the first ``num_scenes`` (default: all) scenes of each split; returns ``out``."""
  if fmt not in formats.WRITERS:
    raise formats.ConversionError(f"Unknown format {fmt!r}; choose one of {', '.join(formats.WRITERS)}.")
  root = Path(out)
  for split in splits:
    src = source.SceneSource(name, split, data_dir)
    n = len(src) if num_scenes is None else min(num_scenes, len(src))
    for i in range(n):
      scene = src[i]
      formats.WRITERS[fmt](root / split / f"{int(scene['scene_id']):06d}", scene)
      if (i + 1) % 100 == 0 or i + 1 == n:
        print(f"  {split}: {i + 1}/{n} scenes written", flush=True)
  print(f"Exported {name} as {fmt} to {root}", flush=True)
  return root
