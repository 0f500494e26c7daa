"""What a detector returns, box geometry, and the scale policy every detector shares.

The scale policy says how small a face is worth finding: `min_face` px, but in a large picture no
smaller than `min_face_fraction` of its short side, so that big photos stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass

from facewire.faces.settings import Box, DetectorSettings

SAME_FACE_IOU = 0.5
"""Two boxes that overlap this much (intersection over union) are one face."""

Point = tuple[float, float]


@dataclass(frozen=True)
class Detection:
    """One face found: its box in the image's pixels (dlib's way of drawing it), the detector's confidence
    (MTCNN: a probability; dlib's detectors: a margin, higher is surer), and MTCNN's five landmarks as
    (x, y): left eye, right eye, nose, left and right mouth corner, as seen in the image (none from dlib's)."""

    box: Box
    score: float
    landmarks: tuple[Point, ...] = ()

    def shifted(self, dy: int, dx: int) -> Detection:
        """The same detection in a picture of which the scanned one was a region at (dy, dx)."""
        top, right, bottom, left = self.box
        return Detection((top + dy, right + dx, bottom + dy, left + dx), self.score,
                         tuple((x + dx, y + dy) for x, y in self.landmarks))


def smallest_face(height: int, width: int, settings: DetectorSettings) -> float:
    """The smallest face (px) worth finding in a picture of this size: the scale policy."""
    return max(settings.min_face, min(height, width) * settings.min_face_fraction)


def clipped(box: tuple[float, float, float, float], height: int, width: int) -> Box:
    """A (top, right, bottom, left) box rounded to pixels and clipped to a height x width picture."""
    top, right, bottom, left = (round(v) for v in box)
    return max(top, 0), min(right, width - 1), min(bottom, height - 1), max(left, 0)


def box_area(box: Box) -> int:
    top, right, bottom, left = box
    return max(0, bottom - top) * max(0, right - left)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when they do not overlap)."""
    inner = (max(a[0], b[0]), min(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))
    overlap = box_area(inner) if inner[0] < inner[2] and inner[3] < inner[1] else 0
    union = box_area(a) + box_area(b) - overlap
    return overlap / union if union else 0.0
