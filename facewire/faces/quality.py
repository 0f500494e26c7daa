"""How good a face is to name or to enrol: its size, its sharpness and its pose.

`face_quality(image, detection)` measures a detected face: its width in pixels; its sharpness, the
variance of the Laplacian of its grey crop resampled to SHARPNESS_SIDE px (so that faces of any size
compare; a blurred or heavily compressed face scores low); and, from MTCNN's landmarks (dlib's
detectors give none), its yaw (left/right turn: 0 frontal, about +-90 in profile, from where the nose
sits between the eyes) and roll (in-plane tilt of the eye line), in degrees.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from facewire.faces import images
from facewire.faces.boxes import Detection

SHARPNESS_SIDE = 64
"""Faces are resampled to this side before their sharpness is measured."""


@dataclass(frozen=True)
class Quality:
    """A face's width (px), sharpness (variance of the Laplacian at SHARPNESS_SIDE px) and, with landmarks,
    yaw and roll (degrees; None without landmarks)."""

    width: int
    sharpness: float
    yaw: float | None = None
    roll: float | None = None

    def to_json(self) -> dict[str, float | int | None]:
        return {"width": self.width, "sharpness": round(self.sharpness, 1),
                "yaw": None if self.yaw is None else round(self.yaw, 1),
                "roll": None if self.roll is None else round(self.roll, 1)}


def face_quality(image: np.ndarray, detection: Detection) -> Quality:
    """The quality of the face `detection` found in a grey, BGR or BGRA `image`."""
    top, right, bottom, left = detection.box
    yaw, roll = pose(detection.landmarks) if detection.landmarks else (None, None)
    return Quality(right - left, sharpness(image[top:bottom + 1, left:right + 1]), yaw, roll)


def sharpness(face: np.ndarray) -> float:
    """The variance of the Laplacian of a face crop, resampled to SHARPNESS_SIDE px square (0 for an empty crop)."""
    if face.size == 0:
        return 0.0
    grey = cv2.resize(images.to_grey(face), (SHARPNESS_SIDE, SHARPNESS_SIDE), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def pose(landmarks: tuple[tuple[float, float], ...]) -> tuple[float, float]:
    """(yaw, roll) in degrees from five landmarks (left eye, right eye, nose, mouth corners, as seen).

    Yaw: where the nose sits along the eye line, between the eyes (0 in the middle, +-90 over one eye;
    positive when the nose is nearer the right eye as seen). Roll: the eye line's angle to the horizontal."""
    (lx, ly), (rx, ry), (nx, ny) = landmarks[:3]
    eye_x, eye_y = rx - lx, ry - ly
    span = math.hypot(eye_x, eye_y)
    if span == 0:
        return 90.0, 0.0
    along = ((nx - lx) * eye_x + (ny - ly) * eye_y) / (span * span)  # 0 at the left eye, 1 at the right
    yaw = math.degrees(math.asin(min(1.0, max(-1.0, 2 * along - 1))))
    return yaw, math.degrees(math.atan2(eye_y, eye_x))
