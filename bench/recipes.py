"""The recipes facewire is measured against, run in this process with face_recognition's own calls.

- `DemoRecipe`: the original PyZMQ demo. Gallery `NAME.jpg` encoded at every start,
  each image enlarged 1.5x, HOG with one upsample, encoded on the enlarged image, and
  named after the nearest known face within the tolerance.
- `StockRecipe`: face_recognition's stock recipe: HOG with one upsample on the full
  image, encoded there, nearest known face within the tolerance.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import cv2
import numpy as np

from facewire.store.gallery import scan

with warnings.catch_warnings():  # face_recognition_models imports the deprecated pkg_resources
    warnings.simplefilter("ignore", UserWarning)
    import face_recognition.api as fr_api

TOLERANCE = 0.6
UNKNOWN = "Unknown"


class StockRecipe:
    """face_recognition as its README uses it."""

    label = "face_recognition stock (HOG, upsample 1, full image)"
    enlarge = 1.0

    def __init__(self, known_dir: Path, tolerance: float = TOLERANCE):
        started = time.perf_counter()
        self.tolerance = tolerance
        self.names: list[str] = []
        rows = []
        for photo in scan(known_dir):
            encodings = fr_api.face_encodings(fr_api.load_image_file(photo.path))
            if encodings:
                self.names.append(photo.name)
                rows.append(encodings[0])
        self.known = np.array(rows)
        self.load_seconds = time.perf_counter() - started

    def names_in(self, bgr: np.ndarray) -> list[str]:
        """The name (or "Unknown") of every face the recipe finds in a BGR image."""
        work = cv2.resize(bgr, None, fx=self.enlarge, fy=self.enlarge) if self.enlarge != 1 else bgr
        rgb = cv2.cvtColor(work, cv2.COLOR_BGR2RGB)
        found = fr_api.face_encodings(rgb, fr_api.face_locations(rgb))
        return [self._nearest(encoding) for encoding in found]

    def _nearest(self, encoding: np.ndarray) -> str:
        name, best = UNKNOWN, self.tolerance
        for known_name, known_encoding in zip(self.names, self.known):  # as the demo loops
            distance = float(np.linalg.norm(known_encoding - encoding))
            if distance <= best:
                name, best = known_name, distance
        return name


class DemoRecipe(StockRecipe):
    """The original PyZMQ demo: the same calls on a copy enlarged 1.5x."""

    label = "original demo (1.5x, HOG upsample 1)"
    enlarge = 1.5
