"""How faces are located, encoded and named: plain settings, importable without dlib, ONNX Runtime or numpy
(the supervisor of a server only passes them on to its workers)."""

from __future__ import annotations

from dataclasses import dataclass, replace

DETECTORS = ("mtcnn", "hog", "cnn")
ENCODERS = ("onnx", "dlib")
METHODS = ("nearest", "knn")
DECISIONS = ("nearest", "margin")

DETECTION_REVISION = 5
"""Bumped whenever detection or encoding changes in a way that can move boxes or encodings."""

Box = tuple[int, int, int, int]
"""A face box as (top, right, bottom, left) in pixels of the image the client sent."""


@dataclass(frozen=True)
class DetectorSettings:
    """How faces are located and encoded.

    detector: "mtcnn" (a CNN cascade on ONNX Runtime: the default), "hog" (dlib's HOG) or "cnn" (dlib's
        CNN, slow without a GPU).
    upsample: None for automatic scaling (see detection.smallest_face); an integer N runs dlib's own
        N-fold upsampling on the full image instead (dlib's detectors only).
    min_face: smallest face, in pixels, that automatic scaling must find.
    min_face_fraction: in large images, faces smaller than this fraction of the
        short side are not searched for, so that big photos stay fast.
    encoder: "onnx" (dlib's network on ONNX Runtime) or "dlib" (dlib itself): the same encodings.
    providers: ONNX Runtime execution providers, in order of preference (empty: the CPU).
    detect_threads: "auto" lets a picture's detection use a second thread when a core is idle
        (machine_load.idle_core), "2" always does, "1" never does (the same faces and boxes).
    thresholds: MTCNN's face probability thresholds for its three stages (P-Net, R-Net, O-Net).
    """

    detector: str = "mtcnn"
    upsample: int | None = None
    min_face: int = 15
    min_face_fraction: float = 1 / 16
    encoder: str = "onnx"
    providers: tuple[str, ...] = ()
    detect_threads: str = "auto"
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)

    def encoding_tag(self) -> str:
        """A string that changes whenever a setting could change an encoding (stored with each one)."""
        mtcnn = self.detector == "mtcnn"
        thresholds = "|" + ",".join(f"{t:g}" for t in self.thresholds) if mtcnn else ""
        upsample = None if mtcnn else self.upsample  # MTCNN scales its picture itself
        return (f"r{DETECTION_REVISION}|{self.detector}|{upsample}|{self.min_face}|{self.min_face_fraction:.4f}"
                f"|{self.encoder}{thresholds}")


@dataclass(frozen=True)
class MatchSettings:
    """How faces are named: `tolerance`, the largest distance named outright; `method`, "nearest"
    (the nearest photo names the face) or "knn" (the `k` nearest photos vote; None: sqrt of the photos);
    `decision`, the rule that names or refuses the nearest person (facewire.faces.decision): "nearest"
    (within the tolerance) or "margin" (also up to `ceiling` when the next person is `margin` further).
    The margin rule and its values were chosen by bench/bench_decision.py (README, Choosing the tolerance)."""

    tolerance: float = 0.6
    method: str = "nearest"
    k: int | None = None
    decision: str = "margin"
    ceiling: float = 0.65
    margin: float = 0.16

    def with_tolerance(self, tolerance: float) -> MatchSettings:
        """These settings under another tolerance (a request's, or --tolerance's): the ceiling moves with it."""
        return replace(self, tolerance=tolerance, ceiling=round(self.ceiling + tolerance - self.tolerance, 10))
