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
    if not labels:
        return image
    height, width = image.shape[:2]
    thickness = max(2, round(min(height, width) / 250))
    size = int(np.clip(min(height, width) / 22, 11, 48))
    for label in labels:
        top, right, bottom, left = label.box
        colour = KNOWN_BGR if label.known else UNKNOWN_BGR
        cv2.rectangle(image, (left, top), (right, bottom), colour, thickness)
    canvas = Image.fromarray(image)  # drawn in BGR order: colours are given as BGR
    pen = ImageDraw.Draw(canvas)
    for label in labels:
        _caption(pen, label, font(size), width, height)
    image[:] = np.asarray(canvas)
    return image


def _caption(pen: ImageDraw.ImageDraw, label: Label, face: ImageFont.ImageFont, width: int, height: int) -> None:
    """A filled strip with the text, below the box (above it if the box touches the bottom)."""
    top, right, bottom, left = label.box
    x0, y0, x1, y1 = pen.textbbox((0, 0), label.text, font=face)
    pad = 3
    strip_w, strip_h = (x1 - x0) + 2 * pad, (y1 - y0) + 2 * pad
    y = bottom if bottom + strip_h <= height else max(0, top - strip_h)
    x = min(max(0, left), max(0, width - strip_w))
    pen.rectangle((x, y, x + strip_w, y + strip_h), fill=KNOWN_BGR if label.known else UNKNOWN_BGR)
    pen.text((x + pad - x0, y + pad - y0), label.text, font=face, fill=TEXT_BGR)
