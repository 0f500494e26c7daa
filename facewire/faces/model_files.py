"""Where the models are: face_recognition_models' dlib files, and facewire's cache of what it derives from them.

The dlib files are found without importing face_recognition_models, which imports the deprecated
pkg_resources. The cache lives under $XDG_CACHE_HOME/facewire (~/.cache/facewire):
dlib's face network converted to ONNX (onnx_model.py), MTCNN's networks converted to ONNX
(mtcnn_model.py) and dlib's HOG face detector as dlib saves it (hog.hog_detector).

A converted model is checked against the .dat it came from by hashing both (onnx_model.is_current,
which imports onnx); a stamp beside it, written after such a check, records both files' size,
mtime, ctime and inode, so that later starts whose files have not changed skip the check.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from pathlib import Path

RESNET = "dlib_face_recognition_resnet_model_v1.dat"
LANDMARKS_5 = "shape_predictor_5_face_landmarks.dat"
CNN_DETECTOR = "mmod_human_face_detector.dat"
MODELS_PACKAGE = "face_recognition_models"

CONVERTER_VERSION = "1"
"""Bumped whenever the graph onnx_model.py builds changes, so cached models are rebuilt."""
INPUT_NAME = "chips"
OUTPUT_NAME = "descriptors"
"""The converted network's input (N, 150, 150, 3) uint8 chips and output (N, 128) float32 descriptors."""


def model_file(name: str) -> Path:
    """The path of one of face_recognition_models' files (RESNET, LANDMARKS_5, CNN_DETECTOR)."""
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"{MODELS_PACKAGE} is not installed: pip install -r requirements.txt")
    return Path(spec.origin).parent / "models" / name


def cache_dir() -> Path:
    """$XDG_CACHE_HOME/facewire, or ~/.cache/facewire."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "facewire"


def default_dat() -> Path:
    """face_recognition_models' dlib_face_recognition_resnet_model_v1.dat."""
    return model_file(RESNET)


def default_onnx_path() -> Path:
    return cache_dir() / "dlib_face_recognition_resnet_model_v1.onnx"


def cached_model(dat_path: str | Path | None = None, out_path: str | Path | None = None) -> Path:
    """The converted model, (re)built if missing or made from another .dat or converter."""
    dat_path = Path(dat_path) if dat_path else default_dat()
    out_path = Path(out_path) if out_path else default_onnx_path()
    if _stamp(out_path).is_file() and _read_stamp(out_path) == _identity(out_path, dat_path):
        return out_path
    from facewire.faces import onnx_model  # noqa: PLC0415 - imports onnx (0.1 s): only to check or convert

    if not onnx_model.is_current(out_path, dat_path):
        onnx_model.convert(dat_path, out_path)
    write_atomically(_stamp(out_path), json.dumps(_identity(out_path, dat_path)).encode())
    return out_path


def write_atomically(path: Path, data: bytes) -> None:
    """`data` as the whole of `path`, or `path` untouched: a temporary file beside it, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise


def _stamp(out_path: Path) -> Path:
    return out_path.with_name(out_path.name + ".checked")


def _read_stamp(out_path: Path) -> object:
    try:
        return json.loads(_stamp(out_path).read_bytes())
    except (OSError, ValueError):
        return None


def _identity(out_path: Path, dat_path: Path) -> dict[str, object]:
    """What changes when either file is replaced or rewritten (ctime even when its mtime is put back)."""
    def of(path: Path) -> list[object]:
        try:
            info = path.stat()
        except OSError:
            return []
        return [str(path.resolve()), info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]

    return {"model": of(out_path), "dat": of(dat_path), "converter": CONVERTER_VERSION}
