"""Find faces: one signature over every detector.

`detect_faces(image, settings)` runs the detector `settings.detector` names (mtcnn.py, hog.py or
dlib_cnn.py) on a grey, BGR or BGRA image, down to the scale policy's smallest face (boxes.smallest_face);
each detector module offers `scan(image, smallest_face, settings)`, `region_smallest_face(face, whole)`
and `load(settings, fork_safe)`. `detect_faces_near` scans only around boxes a tracker already knows
(a video between keyframes).

Every detection's box is drawn the way dlib's detectors draw theirs, which is what the encoder's
landmark model expects, whichever detector found it.
"""

from __future__ import annotations

from types import ModuleType
from typing import Sequence

import numpy as np

from facewire.faces.boxes import SAME_FACE_IOU, Detection, iou, smallest_face
from facewire.faces.settings import Box, DetectorSettings

REGION_MARGIN = 1.5
"""detect_faces_near looks for a tracked face within this many face-widths of its last box."""


def detect_faces(image: np.ndarray, settings: DetectorSettings) -> list[Detection]:
    """Locate faces in a grey, BGR or BGRA image; boxes are in its coordinates, clipped to it."""
    height, width = image.shape[:2]
    return _detector(settings).scan(image, smallest_face(height, width, settings), settings)


def detect_faces_near(image: np.ndarray, near: Sequence[Box], settings: DetectorSettings) -> list[Detection]:
    """Locate faces only around the boxes `near`, each grown by REGION_MARGIN face-widths on every side.

    Each region is scanned for faces down to the size its detector's `region_smallest_face` gives for the
    face it tracks (about the size a whole-picture scan would meet it at), so that a face that stayed near
    its box is found with the box a full scan gives it, and a face elsewhere is not found. A face found
    from two overlapping regions is kept once.
    """
    height, width = image.shape[:2]
    detector, whole = _detector(settings), smallest_face(height, width, settings)
    found: list[Detection] = []
    for top, right, bottom, left in near:
        size = max(right - left, bottom - top)
        margin = round(size * REGION_MARGIN)
        y0, x0 = max(0, top - margin), max(0, left - margin)
        region = image[y0:min(height, bottom + margin + 1), x0:min(width, right + margin + 1)]
        for detection in detector.scan(region, detector.region_smallest_face(size, whole), settings):
            detection = detection.shifted(y0, x0)
            if all(iou(detection.box, other.box) < SAME_FACE_IOU for other in found):
                found.append(detection)
    return found


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
