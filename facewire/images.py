"""Image files and colour layouts: decode bytes, and convert to the layouts dlib and OpenCV need."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})


class ImageError(ValueError):
    """An image that cannot be read or has an unsupported layout."""


def is_image_path(path: Path) -> bool:
    """True for a visible file whose suffix (any case) is a supported image type."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def decode_image(data: bytes) -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, ...) to a BGR uint8 array."""
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError("not a readable image")
    return image


def read_image(path: Path) -> np.ndarray:
    """Read an image file as BGR uint8, with a clear error for a missing or broken file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: {exc.strerror or exc}") from exc
    try:
        return decode_image(data)
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}") from exc


def channels(image: np.ndarray) -> int:
    """Number of colour channels of an HxW or HxWxC array."""
    return 1 if image.ndim == 2 else image.shape[2]


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Grey, BGR or BGRA (as OpenCV reads them) -> contiguous RGB, as dlib wants."""
    codes = {1: cv2.COLOR_GRAY2RGB, 3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGB}
    return cv2.cvtColor(image, codes[channels(image)])


def to_bgr(image: np.ndarray) -> np.ndarray:
    """Grey, BGR or BGRA -> a writable BGR copy, for drawing on."""
    count = channels(image)
    if count == 3:
        return image.copy()
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR if count == 1 else cv2.COLOR_BGRA2BGR)
