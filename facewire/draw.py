"""Draw face boxes and names on an image (any Unicode name, via a TrueType font)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

KNOWN_BGR = (60, 180, 60)
UNKNOWN_BGR = (40, 40, 220)
TEXT_BGR = (255, 255, 255)
FONT_FILES = ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


@dataclass(frozen=True)
class Label:
    """A box (top, right, bottom, left) and the text to write under it."""

    box: tuple[int, int, int, int]
    text: str
    known: bool


@lru_cache(maxsize=32)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A scalable font with wide Unicode coverage, or Pillow's built-in one."""
    for name in FONT_FILES:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size)


def annotate(image: np.ndarray, labels: Sequence[Label]) -> np.ndarray:
    """Draw each label on `image` (BGR, modified in place and returned)."""
    height, width = image.shape[:2]
    thickness = max(2, round(min(height, width) / 250))
    face = font(int(np.clip(min(height, width) / 22, 11, 48)))
    for label in labels:
        top, right, bottom, left = label.box
        cv2.rectangle(image, (left, top), (right, bottom), _colour(label), thickness)
    for label in labels:
        _caption(image, label, face)
    return image


def _colour(label: Label) -> tuple[int, int, int]:
    return KNOWN_BGR if label.known else UNKNOWN_BGR


def _caption(image: np.ndarray, label: Label, face: ImageFont.ImageFont) -> None:
    """A filled strip with the text below the box (above it at the bottom edge).

    Only the strip goes through Pillow, which draws any Unicode name; the frame is not copied.
    """
    height, width = image.shape[:2]
    top, _, bottom, left = label.box
    x0, y0, x1, y1 = face.getbbox(label.text)
    pad = 3
    strip_w, strip_h = min(width, (x1 - x0) + 2 * pad), min(height, (y1 - y0) + 2 * pad)
    y = bottom if bottom + strip_h <= height else max(0, top - strip_h)
    x = min(max(0, left), width - strip_w)
    strip = image[y:y + strip_h, x:x + strip_w]
    strip[:] = _colour(label)
    canvas = Image.fromarray(np.ascontiguousarray(strip))  # drawn in BGR order: colours are BGR
    ImageDraw.Draw(canvas).text((pad - x0, pad - y0), label.text, font=face, fill=TEXT_BGR)
    strip[:] = np.asarray(canvas)
