"""Find faces: one signature over every detector.

`detect_faces(image, settings)` runs the detector `settings.detector` names (mtcnn.py, hog.py or
dlib_cnn.py) on a grey, BGR or BGRA image, down to the scale policy's smallest face (boxes.smallest_face);
each detector module offers `scan(image, smallest_face, settings)`, `scan_near(image, near, settings)`
and `load(settings, fork_safe)`. `detect_faces_near` scans only around boxes a tracker already knows
(a video between keyframes).

Every detection's box is drawn the way dlib's detectors draw theirs, which is what the encoder's
landmark model expects, whichever detector found it.
"""

from __future__ import annotations

from types import ModuleType
from typing import Sequence

import numpy as np

from facewire.faces.boxes import Detection, smallest_face
from facewire.faces.settings import Box, DetectorSettings


def detect_faces(image: np.ndarray, settings: DetectorSettings) -> list[Detection]:
    """Locate faces in a grey, BGR or BGRA image; boxes are in its coordinates, clipped to it."""
    height, width = image.shape[:2]
    return _detector(settings).scan(image, smallest_face(height, width, settings), settings)


def detect_faces_near(image: np.ndarray, near: Sequence[Box], settings: DetectorSettings) -> list[Detection]:
    """Locate faces only around the boxes `near` (a tracker's last boxes): a face that stayed near its box is
    found with about the box a full scan gives it, a face elsewhere is not found, each face once."""
    return _detector(settings).scan_near(image, near, settings)


def load_detector(settings: DetectorSettings, fork_safe: bool = False) -> None:
    """Load the models of `settings.detector` now, so that the first request does not pay for it; with
    `fork_safe` (a process that will fork workers) nothing that cannot cross a fork (an ONNX Runtime session)."""
    _detector(settings).load(settings, fork_safe)


def _detector(settings: DetectorSettings) -> ModuleType:
    if settings.detector == "mtcnn":
        from facewire.faces import mtcnn  # noqa: PLC0415 - each detector's libraries only when it runs

        return mtcnn
    if settings.detector == "cnn":
        from facewire.faces import dlib_cnn  # noqa: PLC0415

        return dlib_cnn
    if settings.detector == "hog":
        from facewire.faces import hog  # noqa: PLC0415

        return hog
    raise ValueError(f"unknown detector {settings.detector!r}")
