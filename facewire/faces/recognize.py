"""Find and encode every face of an image: detection.py, then encoding.py (naming them is matching.py's job)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facewire.faces import encoding, images
from facewire.faces.detection import Detection, detect_faces, load_detector
from facewire.faces.settings import DetectorSettings


@dataclass(frozen=True)
class Face:
    """One face found and encoded: its detection and 128-d encoding."""

    detection: Detection
    encoding: np.ndarray

    @property
    def box(self):  # -> Box
        return self.detection.box


def load_models(settings: DetectorSettings, fork_safe: bool = False) -> None:
    """Load the detector and encoder `settings` name now, so that the first request does not pay for it.

    These are face_recognition's model files and calls (face_recognition.api), minus the 68-point
    landmark model it also loads at import and facewire never uses; and MTCNN's networks. With `fork_safe`
    (a process that will fork workers) nothing is made that cannot cross a fork: each worker makes its own
    ONNX Runtime sessions after the fork."""
    load_detector(settings, fork_safe)
    encoding.load(settings, fork_safe)


def find_faces(image: np.ndarray, settings: DetectorSettings) -> list[Face]:
    """Detect and encode every face of a grey, BGR or BGRA image."""
    found = detect_faces(image, settings)
    if not found:
        return []
    encodings = encoding.encode_faces(images.to_rgb(image), [d.box for d in found], settings)
    return [Face(detection, enc) for detection, enc in zip(found, encodings)]
