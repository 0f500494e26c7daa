"""Whether a face is fit for the gallery: large, sharp and frontal enough, and nearer its own name's photos.

A gallery photo is what every later probe is measured against, so a poor one costs every recognition of
that person. `photo_problem` judges the face alone (the folder sync's check); `enrolment_problem` also
judges it against the gallery (an enrolment's check). Each returns a reason for people, or None.

The limits were measured by bench/bench_enrolment.py (MTCNN, the ONNX encoder) on every photo of
../shared/data/faces/known, known_faces/ and the video portraits, and on copies of them made worse on
purpose; "moved" is how far a copy's encoding is from the original's (the default tolerance is 0.6):

- width: the real faces are 129-519 px wide. Copies shrunk to a 60 px face moved at most 0.18; to 52 px
  up to 0.23, to 28 px up to 0.44, to 20 px up to 0.55.
- sharpness: the real faces measure 507-2957. Every Gaussian-blurred copy under 100 moved 0.22-0.84
  (those at 100 or more, 0.05-0.37); a blurred face of the video clip measures 7-13.
- yaw: the real faces turn at most 35 degrees (kit_harington/john2.jpeg; 30-39 in its shrunk copies).
  In the video clip, Lin-Manuel Miranda's face turned 38-46 degrees is 0.51-0.54 from his portrait, as
  near as when he faces the camera (0.31-0.57); the profiles of the clip and of test/obama_and_biden.jpg
  measure 68-90.
- roll: the real faces tilt at most 11 degrees. Of 77 rotated copies measuring 40 degrees or less, 73
  moved at most 0.13, the other four 0.22-0.64 (three of them measured 23-26 degrees for a rotation of
  35-60: their landmarks missed it); of 43 measuring over 45, 23 moved more than 0.2 (up to 0.72).
- likeness: each real photo is 0.35-0.52 from its person's other photo, and 0.70 or more from anyone else's.

Yaw and roll come from MTCNN's landmarks: with dlib's detectors (no landmarks) they are not checked.
"""

from __future__ import annotations

import numpy as np

from facewire.faces.index import FaceIndex
from facewire.faces.matching import distance_matrix
from facewire.faces.quality import Quality, face_quality
from facewire.faces.recognize import Face

MIN_WIDTH = 60
"""Narrowest face (px) taken into the gallery."""
MIN_SHARPNESS = 100.0
"""Least sharpness (quality.sharpness: the variance of the Laplacian at 64 px) taken into the gallery."""
MAX_YAW = 50.0
"""Largest left/right turn (degrees, from the landmarks) taken into the gallery."""
MAX_ROLL = 40.0
"""Largest in-plane tilt of the eye line (degrees) taken into the gallery."""


def photo_problem(image: np.ndarray, face: Face) -> str | None:
    """Why `face`, found in `image`, is too poor for the gallery, or None when it is fit."""
    return quality_problem(face_quality(image, face.detection))


def quality_problem(quality: Quality) -> str | None:
    """Why a face of this quality is too small, blurred, turned or tilted for the gallery, or None."""
    if quality.width < MIN_WIDTH:
        return f"the face is {quality.width} px wide; at least {MIN_WIDTH} px is needed"
    if quality.sharpness < MIN_SHARPNESS:
        return f"the face is blurred (sharpness {quality.sharpness:.1f}; at least {MIN_SHARPNESS:g})"
    if quality.yaw is not None and abs(quality.yaw) > MAX_YAW:
        return f"the face is turned {abs(quality.yaw):.1f} degrees; at most {MAX_YAW:g}"
    if quality.roll is not None and abs(quality.roll) > MAX_ROLL:
        return f"the face is tilted {abs(quality.roll):.1f} degrees; at most {MAX_ROLL:g}"
    return None


def likeness_problem(name: str, encoding: np.ndarray, gallery: FaceIndex) -> str | None:
    """Why `encoding` should not join `name`'s photos: it is nearer another person's photo than any of
    `name`'s own. None when it is not, or when the gallery lacks photos of `name` or of anyone else."""
    own = gallery.vectors_of(name)
    if len(own) == 0 or len(own) == len(gallery):
        return None
    own_distance = float(distance_matrix(encoding[None, :], own).min())
    distances, ids = gallery.search(encoding[None, :], len(own) + 1)  # at most len(own) of them are own
    other, other_distance = next((person, float(distance))
                                 for person, distance in zip(gallery.names_of(ids)[0], distances[0])
                                 if person != name)
    if other_distance < own_distance:
        return f"the face is nearer {other}'s photos ({other_distance:.2f}) than {name}'s own ({own_distance:.2f})"
    return None


def enrolment_problem(image: np.ndarray, face: Face, name: str, gallery: FaceIndex) -> str | None:
    """Why `face`, found in `image`, should not be enrolled as `name` in `gallery`, or None when it may."""
    return photo_problem(image, face) or likeness_problem(name, face.encoding, gallery)
