"""Showing annotated images in a window, or saving them where there is no display."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np

QUIT_KEYS = {ord("q"), ord("Q"), 27}
MAX_WINDOW = (1280, 800)
SYSTEM_FONTS = Path("/usr/share/fonts/truetype/dejavu")


def display_available() -> bool:
    """False on a Linux machine with no X11 or Wayland display (OpenCV's Qt would abort)."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def show(image: np.ndarray, title: str) -> bool:
    """Show `image` until a key is pressed; False if the user pressed q or Esc."""
    _use_system_fonts()
    cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
    height, width = image.shape[:2]
    fit = min(1.0, MAX_WINDOW[0] / width, MAX_WINDOW[1] / height)
    cv2.resizeWindow(title, max(1, int(width * fit)), max(1, int(height * fit)))
    cv2.imshow(title, image)
    key = cv2.waitKey(0) & 0xFF
    cv2.destroyWindow(title)
    return key not in QUIT_KEYS


def show_frame(image: np.ndarray, title: str) -> bool:
    """One frame of a live stream, without waiting; False once the user pressed q or Esc."""
    _use_system_fonts()
    cv2.imshow(title, image)
    return (cv2.waitKey(1) & 0xFF) not in QUIT_KEYS


def _use_system_fonts() -> None:
    """opencv-python points Qt at a font folder it does not ship; Qt then warns at every window."""
    if not Path(os.environ.get("QT_QPA_FONTDIR", "")).is_dir() and SYSTEM_FONTS.is_dir():
        os.environ["QT_QPA_FONTDIR"] = str(SYSTEM_FONTS)


def save(image: np.ndarray, folder: Path, name: str) -> Path:
    """Write `image` to folder/name (format from the suffix; PNG if it has none OpenCV writes)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if path.suffix.lower() not in {".jpg", ".jpeg", ".png", ".webp", ".bmp"}:
        path = path.with_suffix(".png")
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write {path}")
    return path
