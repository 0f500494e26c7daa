"""Image files and colour layouts: decode bytes, and convert to the layouts dlib and OpenCV need."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
COMPRESSED_FORMATS = {"jpeg": ".jpg", "png": ".png"}
JPEG_QUALITY = 90


class ImageError(ValueError):
    """An image that cannot be read or has an unsupported layout."""


class ImageTooLarge(ImageError):
    """An image over the pixel limit, refused before its pixels are decoded."""


def is_image_path(path: Path) -> bool:
    """True for a visible file whose suffix (any case) is a supported image type."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def decode_image(data: bytes) -> np.ndarray:
    """Decode encoded image bytes (JPEG, PNG, ...) to a BGR uint8 array."""
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageError("not a readable image")
    return image


def compressed_size(data: bytes, fmt: str) -> tuple[int, int]:
    """(width, height) from a JPEG, PNG, WebP or BMP header, without decoding any pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[fmt.upper()]) as image:
                return image.size
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageTooLarge(f"{fmt} image declares an enormous size") from None
    except Exception:
        raise ImageError(f"not a readable {fmt} image") from None


def decode_compressed(data: bytes, fmt: str, max_pixels: int) -> np.ndarray:
    """Decode JPEG/PNG (or WebP/BMP) bytes to BGR, refusing (before decoding) more than max_pixels."""
    width, height = compressed_size(data, fmt)
    if width * height > max_pixels:
        raise ImageTooLarge(f"{fmt} image of {width}x{height} pixels exceeds the limit of {max_pixels}")
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    if image is None or image.shape[:2] != (height, width):
        raise ImageError(f"{fmt} image is corrupt or truncated")
    return image


UPLOAD_SIGNATURES = {"jpeg": (b"\xff\xd8\xff",), "png": (b"\x89PNG\r\n\x1a\n",), "bmp": (b"BM",)}
"""How each uploadable format's bytes begin (WebP: "RIFF", a size, then "WEBP"; see `upload_format`)."""


def upload_format(data: bytes) -> str:
    """The format of an uploaded file, from its first bytes (never from its name or declared type)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    for fmt, signatures in UPLOAD_SIGNATURES.items():
        if data.startswith(signatures):
            return fmt
    raise ImageError("not a JPEG, PNG, WebP or BMP image")


def decode_upload(data: bytes, max_pixels: int) -> np.ndarray:
    """A JPEG, PNG, WebP or BMP file to BGR, refusing (before decoding) more than max_pixels."""
    return decode_compressed(data, upload_format(data), max_pixels)


def encode_compressed(image: np.ndarray, fmt: str) -> bytes:
    """BGR/grey/BGRA array -> JPEG or PNG bytes."""
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if fmt == "jpeg" else [cv2.IMWRITE_PNG_COMPRESSION, 1]
    ok, data = cv2.imencode(COMPRESSED_FORMATS[fmt], image, params)
    if not ok:
        raise ImageError(f"could not encode the image as {fmt}")
    return data.tobytes()


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


def to_grey(image: np.ndarray) -> np.ndarray:
    """Grey, BGR or BGRA -> one grey channel (what the HOG detector needs, at a third of the work)."""
    count = channels(image)
    if count == 1:
        return image.reshape(image.shape[:2])
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if count == 3 else cv2.COLOR_BGRA2GRAY)


def to_bgr(image: np.ndarray) -> np.ndarray:
    """Grey, BGR or BGRA -> a writable BGR copy, for drawing on."""
    count = channels(image)
    if count == 3:
        return image.copy()
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR if count == 1 else cv2.COLOR_BGRA2BGR)
