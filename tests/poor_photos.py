"""Poor enrolment photos made from the shared photos, each with the reason it must be refused for."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from facewire.faces import images

OBAMA_FACE = 271
"""The width (px) of the face in known/obama/obama.jpg, as MTCNN finds it."""


def good_photo(shared: Path) -> np.ndarray:
    return images.read_image(shared / "known" / "obama" / "obama.jpg")


def video_frame(video: Path, number: int) -> np.ndarray:
    """Frame `number` (from 0) of a video, read in order."""
    capture = cv2.VideoCapture(str(video))
    try:
        for _ in range(number + 1):
            ok, frame = capture.read()
            assert ok, f"{video} has no frame {number}"
        return frame
    finally:
        capture.release()


def rotated(image: np.ndarray, degrees: float) -> np.ndarray:
    """The image turned about its centre, its corners filled with its edges."""
    height, width = image.shape[:2]
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    return cv2.warpAffine(image, turn, (width, height), borderMode=cv2.BORDER_REPLICATE)


def poor_photos(shared: Path) -> dict[str, tuple[np.ndarray, str]]:
    """Photos of one face that the enrolment checks refuse, by kind: (the photo, a regex of the reason)."""
    obama = good_photo(shared)
    small = 30 / OBAMA_FACE
    return {
        "small": (cv2.resize(obama, None, fx=small, fy=small, interpolation=cv2.INTER_AREA),
                  r"the face is \d\d px wide; at least 60 px is needed"),
        "blurred": (cv2.GaussianBlur(obama, (0, 0), 0.04 * OBAMA_FACE),
                    r"the face is blurred \(sharpness \d\d?\.\d; at least 100\)"),
        "turned": (video_frame(shared / "video" / "short_hamilton_clip.mp4", 35),  # Alex Lacamoire in profile
                   r"the face is turned [6-9]\d\.\d degrees; at most 50"),
        "tilted": (rotated(obama, 60), r"the face is tilted [5-7]\d\.\d degrees; at most 40"),
    }


def png(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", image)
    assert ok
    return data.tobytes()
