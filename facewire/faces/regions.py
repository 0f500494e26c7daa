"""A tracked face looked for only around its last box: the region scan dlib's detectors use between keyframes."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from facewire.faces.boxes import SAME_FACE_IOU, Detection, iou, smallest_face
from facewire.faces.settings import Box, DetectorSettings

REGION_MARGIN = 1.5
"""A tracked face is looked for within this many face-widths of its last box."""

Scan = Callable[[np.ndarray, float, DetectorSettings], list[Detection]]


def scan_regions(scan: Scan, region_smallest_face: Callable[[int, float], float], image: np.ndarray,
                 near: Sequence[Box], settings: DetectorSettings) -> list[Detection]:
    """Faces found by `scan` only around the boxes `near`, each grown by REGION_MARGIN face-widths on every side.

    Each region is scanned for faces down to `region_smallest_face(face, whole picture's smallest face)`
    (about the size a whole-picture scan would meet the face at), so that a face that stayed near its
    box is found with the box a full scan gives it, and a face elsewhere is not found. A face found
    from two overlapping regions is kept once.
    """
    height, width = image.shape[:2]
    whole = smallest_face(height, width, settings)
    found: list[Detection] = []
    for top, right, bottom, left in near:
        size = max(right - left, bottom - top)
        margin = round(size * REGION_MARGIN)
        y0, x0 = max(0, top - margin), max(0, left - margin)
        region = image[y0:min(height, bottom + margin + 1), x0:min(width, right + margin + 1)]
        for detection in scan(region, region_smallest_face(size, whole), settings):
            detection = detection.shifted(y0, x0)
            if all(iou(detection.box, other.box) < SAME_FACE_IOU for other in found):
                found.append(detection)
    return found
