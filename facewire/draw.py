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
WIDE_FONT_FILES = ("/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf", "DroidSansFallbackFull.ttf")
"""For names in scripts DejaVu lacks (Debian's fonts-droid-fallback): Chinese, Japanese, Korean."""
WIDE_SCRIPTS = ((0x2E80, 0x9FFF), (0xA960, 0xA97F), (0xAC00, 0xD7FF), (0xF900, 0xFAFF), (0xFE30, 0xFE4F),
                (0xFF00, 0xFFEF), (0x20000, 0x2FA1F))


@dataclass(frozen=True)
class Label:
    """A box (top, right, bottom, left) and the text to write under it."""

    box: tuple[int, int, int, int]
    text: str
    known: bool


def needs_wide_font(text: str) -> bool:
    return any(low <= ord(char) <= high for char in text for low, high in WIDE_SCRIPTS)


def runs(text: str, size: int) -> list[tuple[str, ImageFont.FreeTypeFont]]:
    """The text cut where the script changes, each piece with a font that has its glyphs."""
    pieces: list[tuple[str, bool]] = []
    for char in text:
        wide = needs_wide_font(char)
        if pieces and pieces[-1][1] == wide:
            pieces[-1] = (pieces[-1][0] + char, wide)
        else:
            pieces.append((char, wide))
    return [(piece, font(size, wide)) for piece, wide in pieces]


@lru_cache(maxsize=32)
def font(size: int, wide: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """DejaVu Sans (Latin, Greek, Cyrillic...), the CJK fallback when `wide`, else Pillow's own."""
    for name in (WIDE_FONT_FILES + FONT_FILES) if wide else FONT_FILES:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default(size)


def annotate(image: np.ndarray, labels: Sequence[Label]) -> np.ndarray:
    """Draw each label on `image` (BGR, modified in place and returned)."""
    height, width = image.shape[:2]
    thickness = max(2, round(min(height, width) / 250))
    size = int(np.clip(min(height, width) / 22, 11, 48))
    for label in labels:
        top, right, bottom, left = label.box
        cv2.rectangle(image, (left, top), (right, bottom), _colour(label), thickness)
    for label in labels:
        _caption(image, label, size)
    return image


def _colour(label: Label) -> tuple[int, int, int]:
    return KNOWN_BGR if label.known else UNKNOWN_BGR


def _caption(image: np.ndarray, label: Label, size: int) -> None:
    """A filled strip with the text below the box (above it at the bottom edge).

    Only the strip goes through Pillow, which draws any Unicode name; the frame is not copied.
    """
    height, width = image.shape[:2]
    top, _, bottom, left = label.box
    pieces = runs(label.text, size)
    lengths = [face.getlength(piece) for piece, face in pieces]
    ascent = max(face.getmetrics()[0] for _, face in pieces)
    descent = max(face.getmetrics()[1] for _, face in pieces)
    pad = 3
    strip_w, strip_h = min(width, int(sum(lengths)) + 2 * pad), min(height, ascent + descent + 2 * pad)
    y = bottom if bottom + strip_h <= height else max(0, top - strip_h)
    x = min(max(0, left), width - strip_w)
    strip = image[y:y + strip_h, x:x + strip_w]
    strip[:] = _colour(label)
    canvas = Image.fromarray(np.ascontiguousarray(strip))  # drawn in BGR order: colours are BGR
    pen, cursor = ImageDraw.Draw(canvas), float(pad)
    for (piece, face), length in zip(pieces, lengths):
        pen.text((cursor, pad + ascent), piece, font=face, fill=TEXT_BGR, anchor="ls")  # one shared baseline
        cursor += length
    strip[:] = np.asarray(canvas)
