"""Draw face boxes and names on an image (any Unicode name, via a TrueType font).

Captions are laid out first (`layout_captions`) so that none covers another or leaves the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from math import inf
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
MIN_FONT, MAX_FONT = 10, 48
PAD = 3
"""Pixels between a caption's text and the edge of its strip."""
GAP = 2
"""Pixels kept free between two captions, so that neighbours read as two names."""

Rect = tuple[int, int, int, int]
"""A rectangle as (x, y, width, height); it covers x <= column < x + width and y <= row < y + height."""


@dataclass(frozen=True)
class Label:
    """A box (top, right, bottom, left) and the text to write under it."""

    box: tuple[int, int, int, int]
    text: str
    known: bool


@dataclass(frozen=True)
class Caption:
    """Where a caption strip goes, and the font size of its text."""

    x: int
    y: int
    w: int
    h: int
    size: int


def needs_wide_font(text: str) -> bool:
    return any(low <= ord(char) <= high for char in text for low, high in WIDE_SCRIPTS)


def runs(text: str, size: int) -> list[tuple[str, ImageFont.FreeTypeFont]]:
    """The text on one line, cut where the script changes, each piece with a font that has its glyphs."""
    pieces: list[tuple[str, bool]] = []
    for char in " ".join(text.splitlines()):  # Pillow's layout engine fails on line breaks
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
    for label in labels:
        top, right, bottom, left = label.box
        cv2.rectangle(image, (left, top), (right, bottom), _colour(label), thickness)
    for label, caption in zip(labels, layout_captions(labels, height, width)):
        if caption:
            _draw_caption(image, label, caption)
    return image


def layout_captions(labels: Sequence[Label], height: int, width: int) -> list[Caption | None]:
    """A caption for each label, in order, none overlapping another or leaving the image.

    Each goes below its box, else above it, else to the nearest free place near it (off the
    other faces if possible, then with a smaller font), else anywhere free; None if nowhere.
    """
    faces = [_face_rect(label.box) for label in labels]
    placed: list[Rect] = []
    captions: list[Caption | None] = []
    for label, own in zip(labels, faces):
        caption = _place(label.text, own, placed, faces, height, width)
        if caption:
            placed.append((caption.x - GAP, caption.y - GAP, caption.w + 2 * GAP, caption.h + 2 * GAP))
        captions.append(caption)
    return captions


def font_sizes(face_height: int, height: int, width: int) -> list[int]:
    """Font sizes to try, largest first: one that follows the face (capped by the image), down to MIN_FONT."""
    image_cap = np.clip(min(height, width) / 22, 11, MAX_FONT)
    sizes = [int(min(np.clip(face_height / 3, MIN_FONT, MAX_FONT), image_cap))]
    while sizes[-1] > MIN_FONT:
        sizes.append(max(MIN_FONT, int(sizes[-1] * 0.8)))
    return sizes


def _place(text: str, own: Rect, placed: list[Rect], faces: list[Rect], height: int,
           width: int) -> Caption | None:
    """The first fit: near the face and off all faces, trying each font size; the same off its own
    face only; then anywhere at the smallest size (off all faces, off its own face, over faces)."""
    sizes, near = font_sizes(own[3], height, width), max(own[2], own[3])
    attempts = [(placed + faces, size, near) for size in sizes]
    attempts += [(placed + [own], size, near) for size in sizes]
    attempts += [(obstacles, sizes[-1], inf) for obstacles in (placed + faces, placed + [own], placed)]
    for obstacles, size, reach in attempts:
        w, h = _strip_size(text, size)
        w, h = min(w, width), min(h, height)  # wider than the image: the end of the text is cut, as before
        spot = _spot(own, w, h, obstacles, height, width, reach)
        if spot:
            return Caption(spot[0], spot[1], w, h, size)
    return None


def _spot(own: Rect, w: int, h: int, obstacles: list[Rect], height: int, width: int,
          reach: float) -> tuple[int, int] | None:
    """Top-left corner of a free w x h strip: below the face, else above, else the closest one within `reach`.

    The closest free place always has each coordinate at an anchor, an image edge or against an
    obstacle, so only those candidates are tried (ties go to the one nearest the spot below).
    """
    left, top, face_w, face_h = own
    x0, y0 = min(max(0, left), width - w), top + face_h
    for y in (y0, top - h):
        if 0 <= y <= height - h and not _overlaps(np.array([x0]), np.array([y]), w, h, obstacles).any():
            return x0, y
    boxes = np.array(obstacles, dtype=np.int64).reshape(-1, 4)
    xs = np.concatenate(([x0, left - w, left + face_w, 0, width - w], boxes[:, 0] - w,
                         boxes[:, 0] + boxes[:, 2]))
    ys = np.concatenate(([y0, top - h, 0, height - h], boxes[:, 1] - h, boxes[:, 1] + boxes[:, 3]))
    x, y = (grid.ravel() for grid in np.meshgrid(np.unique(np.clip(xs, 0, width - w)),
                                                  np.unique(np.clip(ys, 0, height - h))))
    gap = np.hypot(np.maximum(0, np.maximum(left - x - w, x - left - face_w)),
                   np.maximum(0, np.maximum(top - y - h, y - top - face_h)))
    order = np.lexsort((x, y, np.abs(x - x0) + np.abs(y - y0), gap))
    order = order[gap[order] <= reach]
    free = order[~_overlaps(x[order], y[order], w, h, obstacles)]
    return (int(x[free[0]]), int(y[free[0]])) if free.size else None


def _overlaps(x: np.ndarray, y: np.ndarray, w: int, h: int, obstacles: list[Rect]) -> np.ndarray:
    """For each w x h strip at (x, y): does it overlap any obstacle?"""
    boxes = np.array(obstacles, dtype=np.int64).reshape(-1, 4)
    ox, oy, ow, oh = (column[None, :] for column in boxes.T)
    x, y = x[:, None], y[:, None]
    return ((x < ox + ow) & (ox < x + w) & (y < oy + oh) & (oy < y + h)).any(axis=1)


def _face_rect(box: tuple[int, int, int, int]) -> Rect:
    top, right, bottom, left = box
    return (left, top, max(0, right - left), max(0, bottom - top))


def _colour(label: Label) -> tuple[int, int, int]:
    return KNOWN_BGR if label.known else UNKNOWN_BGR


def _measure(text: str, size: int) -> tuple[list[tuple[str, ImageFont.FreeTypeFont]], list[float], int, int]:
    """The text's runs, their lengths, and the largest ascent and descent of their fonts."""
    pieces = runs(text, size)
    ascents, descents = zip(*[face.getmetrics() for _, face in pieces] or [font(size).getmetrics()])
    return pieces, [face.getlength(piece) for piece, face in pieces], max(ascents), max(descents)


@lru_cache(maxsize=1024)
def _strip_size(text: str, size: int) -> tuple[int, int]:
    _, lengths, ascent, descent = _measure(text, size)
    return int(sum(lengths)) + 2 * PAD, ascent + descent + 2 * PAD


def _draw_caption(image: np.ndarray, label: Label, caption: Caption) -> None:
    """A filled strip with the text. Only the strip goes through Pillow, which draws any Unicode
    name; the frame is not copied."""
    strip = image[caption.y:caption.y + caption.h, caption.x:caption.x + caption.w]
    strip[:] = _colour(label)
    canvas = Image.fromarray(np.ascontiguousarray(strip))  # drawn in BGR order: colours are BGR
    pieces, lengths, ascent, _ = _measure(label.text, caption.size)
    pen, cursor = ImageDraw.Draw(canvas), float(PAD)
    for (piece, face), length in zip(pieces, lengths):
        pen.text((cursor, PAD + ascent), piece, font=face, fill=TEXT_BGR, anchor="ls")  # one shared baseline
        cursor += length
    strip[:] = np.asarray(canvas)
