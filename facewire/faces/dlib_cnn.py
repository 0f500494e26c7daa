"""dlib's CNN face detector (mmod_human_face_detector), scanned at the same scale policy as HOG (hog.py)."""

from __future__ import annotations

from functools import cache
from typing import Sequence

import dlib
import numpy as np

from facewire.faces import hog
from facewire.faces.boxes import Detection
from facewire.faces.model_files import CNN_DETECTOR, model_file
from facewire.faces.regions import scan_regions
from facewire.faces.settings import Box, DetectorSettings


@cache
def cnn_detector() -> dlib.cnn_face_detection_model_v1:
    return dlib.cnn_face_detection_model_v1(str(model_file(CNN_DETECTOR)))


def load(settings: DetectorSettings, fork_safe: bool = False) -> None:
    cnn_detector()


def scan_near(image: np.ndarray, near: Sequence[Box], settings: DetectorSettings) -> list[Detection]:
    """Faces around the boxes `near` only, region by region as HOG looks for them (regions.scan_regions)."""
    return scan_regions(scan, hog.region_smallest_face, image, near, settings)


def scan(image: np.ndarray, smallest_face: float, settings: DetectorSettings) -> list[Detection]:
    """Faces of `smallest_face` px or more, in the picture HOG would scan (hog.prepared)."""
    height, width = image.shape[:2]
    work, scale, upsample = hog.prepared(image, smallest_face, settings)
    return [Detection(hog.scaled_box(found.rect, scale, height, width), float(found.confidence))
            for found in cnn_detector()(work, upsample)]
