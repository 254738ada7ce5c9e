"""Standard multi-view formats, read and written: the one place their camera conventions live.

A scene here is a dict of numpy arrays in the project's
conventions (``nerf_vae_jax.geometry``): images uint8 [V, H, W, 3];
intrinsics float32 [V, 4] = (fx, fy, cx, cy) in pixels, where pixel (i, j)
covers [j, j + 1] x [i, i + 1] (its centre at +0.5); cam_to_world float32
[V, 4, 4] in the OpenGL convention (camera looks down -z, y up); masks uint8
[V, H, W] (1 on the object) or None; background float32 [3] in [0, 1] or None.

Formats:

* ``blender``: the NeRF synthetic / instant-ngp / nerfstudio layout, one folder
  per scene with ``transforms.json``: per-frame ``file_path`` (relative to the
  folder, extension optional) and ``transform_matrix`` (camera-to-world,
  OpenGL: the same as ours, so used as is); intrinsics from ``fl_x``, ``fl_y``,
  ``cx``, ``cy``, ``w``, ``h`` (top level or per frame) or else
  ``camera_angle_x`` (and ``camera_angle_y``), principal point at the image
  centre. ``cx``, ``cy`` are read in the +0.5 convention above (nerfstudio's
  and instant-ngp's). RGBA frames are composited over the stated background
  and their alpha (> 0.5) becomes the mask.
* ``srn``: the SRN / pixelNeRF ShapeNet layout, one folder per scene with
  ``rgb/*.png``, ``pose/*.txt`` (16 numbers, camera-to-world in the OpenCV
  convention: looks down +z, y down; converted by flipping the camera's y and
  z axes) and ``intrinsics.txt`` (first line ``f cx cy 0``, last line
  ``H W``; fx = fy = f). SRN's renders have a white background.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from nerf_vae_jax import errors, visualize

FORMATS = ("blender", "srn")
OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0]).astype(np.float32)  # flips the camera's y and z axes
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class ConversionError(errors.UserError):
  """Input that cannot be converted; the message names the file and the fix."""


# ---- Reading.

def _load_image(path: Path, background, pixels: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
  """uint8 RGB [H, W, 3] and, for RGBA files, the mask uint8 [H, W] (alpha > 0.5).

  ``pixels=False`` reads only the header: zeros of the image's shape (no memory).
  """
  try:
    with Image.open(path) as im:
      rgba = im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info)
      if not pixels:
        zeros = np.broadcast_to(np.uint8(0), (im.height, im.width, 3))
        return zeros, (zeros[..., 0] if rgba else None)
      im.load()
      x = np.asarray(im.convert("RGBA" if rgba else "RGB"))
  except FileNotFoundError:
    raise ConversionError(f"{path}: frame file not found. Fix the frame's path or add the file.") from None
  except OSError as e:
    raise ConversionError(f"{path}: cannot read the image ({e}). Replace or remove the frame.") from None
  if not rgba:
    return x, None
  alpha = x[..., 3:].astype(np.float32) / 255.0
  bg = np.asarray(background, np.float32) * 255.0
  rgb = x[..., :3].astype(np.float32) * alpha + bg * (1.0 - alpha)
  return np.round(rgb).astype(np.uint8), (alpha[..., 0] > 0.5).astype(np.uint8)


def check_rigid(c2w: np.ndarray, where: str, tol: float = 1e-3) -> None:
  """Raises ConversionError unless ``c2w`` [4, 4] is a rigid transform (rotation + translation)."""
  c2w = np.asarray(c2w, np.float64)
  if c2w.shape != (4, 4) or not np.all(np.isfinite(c2w)):
    raise ConversionError(f"{where}: the camera pose is not a finite 4x4 matrix. Fix the pose.")
  r = c2w[:3, :3]
  if (not np.allclose(c2w[3], [0, 0, 0, 1], atol=tol) or not np.allclose(r.T @ r, np.eye(3), atol=tol)
      or np.linalg.det(r) < 0):
    raise ConversionError(
        f"{where}: the camera pose is not a rigid transform (its 3x3 part must be a rotation, with no scale "
        f"or mirroring, and its last row 0 0 0 1). Fix the pose (a scaled scene must be scaled in the "
        f"translations, not the rotation).")


def _check_intrinsics(intr, h: int, w: int, where: str) -> None:
  fx, fy, cx, cy = intr
  if not (fx > 0 and fy > 0 and 0 < cx < w and 0 < cy < h):
    raise ConversionError(
        f"{where}: intrinsics (fx={fx:g}, fy={fy:g}, cx={cx:g}, cy={cy:g}) do not match the {w}x{h} image "
        f"(focal lengths must be positive and the principal point inside the image). Fix the intrinsics or "
        f"the image size.")


def _stack(frames, where: str) -> np.ndarray:
  sizes = {f.shape for f in frames}
  if len(sizes) > 1:
    raise ConversionError(f"{where}: images of different sizes in one scene ({', '.join(map(str, sorted(sizes)))}). "
                          f"Give every view of a scene the same size.")
  return np.stack(frames)


def read_blender(folder: Path, background=(1.0, 1.0, 1.0), pixels: bool = True) -> dict:
  """A scene folder with transforms.json -> scene dict (see the module docstring).

  ``pixels=False``: cameras and image sizes only (images and masks are zeros).
  """
  folder = Path(folder)
  path = folder / "transforms.json"
  try:
    meta = json.loads(path.read_text())
  except FileNotFoundError:
    raise ConversionError(f"{folder}: no transforms.json. Each scene folder of the blender format needs one.") from None
  except json.JSONDecodeError as e:
    raise ConversionError(f"{path}: not valid JSON ({e}). Fix the file.") from None
  frames = meta.get("frames") or []
  if not frames:
    raise ConversionError(f"{path}: no frames. List the views under \"frames\".")
  images, masks, intrinsics, poses = [], [], [], []
  for i, fr in enumerate(frames):
    where = f"{path} frame {i}"
    if "file_path" not in fr or "transform_matrix" not in fr:
      raise ConversionError(f"{where}: needs \"file_path\" and \"transform_matrix\".")
    file = folder / fr["file_path"]
    if file.suffix.lower() not in IMAGE_SUFFIXES:
      file = file.with_name(file.name + ".png")  # the NeRF synthetic scenes omit the extension
    rgb, mask = _load_image(file, background, pixels)
    h, w = rgb.shape[:2]
    get = lambda k: fr.get(k, meta.get(k))
    if get("w") is not None and (int(get("w")), int(get("h"))) != (w, h):
      raise ConversionError(f"{file}: the image is {w}x{h} but {path} says w={get('w')}, h={get('h')}. "
                            f"Fix w and h, or resize the image.")
    if get("fl_x") is not None:
      fx = float(get("fl_x"))
      fy = float(get("fl_y") if get("fl_y") is not None else fx)
      cx = float(get("cx") if get("cx") is not None else w / 2)
      cy = float(get("cy") if get("cy") is not None else h / 2)
    elif get("camera_angle_x") is not None:
      fx = 0.5 * w / np.tan(0.5 * float(get("camera_angle_x")))
      fy = 0.5 * h / np.tan(0.5 * float(get("camera_angle_y"))) if get("camera_angle_y") is not None else fx
      cx, cy = w / 2, h / 2
    else:
      raise ConversionError(f"{where}: no intrinsics. Give camera_angle_x, or fl_x (and fl_y, cx, cy).")
    _check_intrinsics((fx, fy, cx, cy), h, w, where)
    c2w = np.asarray(fr["transform_matrix"], np.float64)
    check_rigid(c2w, where)
    images.append(rgb)
    masks.append(mask)
    intrinsics.append((fx, fy, cx, cy))
    poses.append(c2w)
  has_masks = all(m is not None for m in masks)
  return {"images": _stack(images, str(folder)), "intrinsics": np.asarray(intrinsics, np.float32),
          "cam_to_world": np.asarray(poses, np.float32), "masks": np.stack(masks) if has_masks else None,
          "background": np.asarray(background, np.float32) if has_masks else None}


def read_srn(folder: Path, pixels: bool = True) -> dict:
  """An SRN scene folder (rgb/, pose/, intrinsics.txt) -> scene dict (``pixels``: see ``read_blender``)."""
  folder = Path(folder)
  path = folder / "intrinsics.txt"
  try:
    lines = [l.split() for l in path.read_text().splitlines() if l.strip()]
    f, cx, cy = map(float, lines[0][:3])
    h, w = map(int, map(float, lines[-1][:2]))
  except FileNotFoundError:
    raise ConversionError(f"{folder}: no intrinsics.txt. Each scene folder of the srn format needs one.") from None
  except (ValueError, IndexError):
    raise ConversionError(f"{path}: expected 'f cx cy 0' on the first line and 'H W' on the last.") from None
  rgbs = sorted(p for p in (folder / "rgb").glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
  if not rgbs:
    raise ConversionError(f"{folder}/rgb: no images. The srn format keeps the views in rgb/*.png.")
  images, intrinsics, poses = [], [], []
  for file in rgbs:
    pose_file = folder / "pose" / (file.stem + ".txt")
    try:
      c2w = np.asarray(pose_file.read_text().split(), np.float64).reshape(4, 4)
    except FileNotFoundError:
      raise ConversionError(f"{pose_file}: missing (every rgb/ image needs a pose/ file of the same name).") from None
    except ValueError:
      raise ConversionError(f"{pose_file}: expected 16 numbers (a 4x4 camera-to-world matrix).") from None
    check_rigid(c2w, str(pose_file))
    rgb, _ = _load_image(file, (1.0, 1.0, 1.0), pixels)
    # intrinsics.txt describes the original renders; the images may be stored at another size.
    s = rgb.shape[1] / w
    _check_intrinsics((f, f, cx, cy), h, w, str(path))
    images.append(rgb)
    intrinsics.append((f * s, f * rgb.shape[0] / h, cx * s, cy * rgb.shape[0] / h))
    poses.append(c2w @ OPENCV_TO_OPENGL)
  return {"images": _stack(images, str(folder)), "intrinsics": np.asarray(intrinsics, np.float32),
          "cam_to_world": np.asarray(poses, np.float32), "masks": None,
          "background": np.ones(3, np.float32)}


def read_scene(folder: Path, fmt: str, background=(1.0, 1.0, 1.0), pixels: bool = True) -> dict:
  """One scene folder of format ``fmt`` (``background``: for blender RGBA frames)."""
  if fmt == "blender":
    return read_blender(folder, background, pixels)
  if fmt == "srn":
    return read_srn(folder, pixels)
  raise ConversionError(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}.")


# ---- Writing (exports of our datasets; the round trip is tested).

def _save_png(path: Path, image: np.ndarray) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  visualize.save_png(path, image)


def write_blender(folder: Path, scene: dict) -> None:
  """transforms.json (fl_x, fl_y, cx, cy, w, h per frame, and camera_angle_x) and RGB frames."""
  folder = Path(folder)
  v, h, w, _ = scene["images"].shape
  frames = []
  for i in range(v):
    fx, fy, cx, cy = (float(x) for x in scene["intrinsics"][i])
    _save_png(folder / "images" / f"{i:03d}.png", scene["images"][i])
    frames.append({"file_path": f"images/{i:03d}.png", "fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "w": w,
                   "h": h, "transform_matrix": np.asarray(scene["cam_to_world"][i], np.float64).tolist()})
  fx0 = float(scene["intrinsics"][0][0])
  meta = {"camera_angle_x": float(2 * np.arctan(0.5 * w / fx0)), "frames": frames}
  (folder / "transforms.json").write_text(json.dumps(meta, indent=1))


def write_srn(folder: Path, scene: dict) -> None:
  """rgb/NNNNNN.png, pose/NNNNNN.txt (OpenCV camera-to-world) and intrinsics.txt. Needs fx = fy, one camera."""
  folder = Path(folder)
  v, h, w, _ = scene["images"].shape
  intr = np.asarray(scene["intrinsics"])
  if not (np.allclose(intr, intr[0]) and np.isclose(intr[0, 0], intr[0, 1])):
    raise ConversionError("The srn format has one focal length for all views (fx = fy): this scene has others.")
  f, _, cx, cy = (float(x) for x in intr[0])
  (folder / "pose").mkdir(parents=True, exist_ok=True)
  for i in range(v):
    _save_png(folder / "rgb" / f"{i:06d}.png", scene["images"][i])
    c2w = np.asarray(scene["cam_to_world"][i], np.float64) @ OPENCV_TO_OPENGL  # its own inverse
    (folder / "pose" / f"{i:06d}.txt").write_text(" ".join(f"{x:.9g}" for x in c2w.ravel()) + "\n")
  (folder / "intrinsics.txt").write_text(f"{f:.9g} {cx:.9g} {cy:.9g} 0.\n0. 0. 0.\n1.\n{h} {w}\n")


WRITERS = {"blender": write_blender, "srn": write_srn}


# ---- Folder layout: splits and scenes.

def find_scenes(source: str | os.PathLike, fmt: str, split_file: str | None = None) -> dict[str, list[Path]]:
  """{split: [scene folders]} of a dataset folder.

  Layouts: ``source/<split>/<scene>/`` (the SRN layout's ``cars_train`` and
  the like count as split ``train``: the part after the last underscore), or
  ``source/<scene>/`` with a JSON ``split_file`` {"train": [scene names],
  "test": [...]}. A scene folder is one that holds ``transforms.json``
  (blender) or ``intrinsics.txt`` (srn).
  """
  if fmt not in FORMATS:
    raise ConversionError(f"Unknown format {fmt!r}; choose one of {', '.join(FORMATS)}.")
  root = Path(source)
  if not root.is_dir():
    raise ConversionError(f"{root}: no such folder. Pass the dataset's folder with --source.")
  marker = "transforms.json" if fmt == "blender" else "intrinsics.txt"
  is_scene = lambda p: (p / marker).is_file()
  if split_file:
    try:
      names = json.loads(Path(split_file).read_text())
    except (OSError, json.JSONDecodeError) as e:
      raise ConversionError(f"{split_file}: cannot read the split file ({e}).") from None
    out = {split: [root / n for n in scenes] for split, scenes in names.items()}
    for split, folders in out.items():
      for p in folders:
        if not is_scene(p):
          raise ConversionError(f"{p} (split {split!r} in {split_file}): not a {fmt} scene folder (no {marker}).")
  else:
    out = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
      scenes = sorted(p for p in d.iterdir() if p.is_dir() and is_scene(p))
      if scenes:
        out.setdefault(d.name.rsplit("_", 1)[-1], []).extend(scenes)
  if not out or not any(out.values()):
    raise ConversionError(f"{root}: no {fmt} scenes found (folders <split>/<scene>/ with {marker}). "
                          f"Check --source and --format, or pass --split_file.")
  return out
