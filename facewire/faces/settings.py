"""How faces are located, encoded and named: plain settings, importable without dlib, ONNX Runtime or numpy
(the supervisor of a server only passes them on to its workers)."""

from __future__ import annotations

from dataclasses import dataclass

ENCODERS = ("onnx", "dlib")
METHODS = ("nearest", "knn")

DETECTION_REVISION = 4
"""Bumped whenever detection or encoding changes in a way that can move boxes or encodings
(2: HOG on grey; 3: small faces encoded from an enlarged copy; 4: the pyramid split in two)."""

Box = tuple[int, int, int, int]
"""A face box as (top, right, bottom, left) in pixels of the image the client sent."""


@dataclass(frozen=True)
class DetectorSettings:
    """How faces are located and encoded.

    model: "hog" (fast, CPU) or "cnn" (more accurate, slow without a GPU).
    upsample: None for automatic scaling (see recognize.detection_scale); an integer N
        runs dlib's own N-fold upsampling on the full image instead.
    min_face: smallest face, in pixels, that automatic scaling must find.
    min_face_fraction: in large images, faces smaller than this fraction of the
        short side are not searched for, so that big photos stay fast.
    encoder: "onnx" (dlib's network on ONNX Runtime) or "dlib" (dlib itself): the same encodings.
    providers: ONNX Runtime execution providers, in order of preference (empty: the CPU).
    detect_threads: "auto" scans the HOG pyramid's fine and coarse levels on two threads when a
        core is idle (recognize.idle_core), "2" always does, "1" never does (the same faces and boxes).
    """

    model: str = "hog"
    upsample: int | None = None
    min_face: int = 15
    min_face_fraction: float = 1 / 16
    encoder: str = "onnx"
    providers: tuple[str, ...] = ()
    detect_threads: str = "auto"

    def cache_tag(self) -> str:
        """A string that changes whenever a setting could change an encoding."""
        return (f"r{DETECTION_REVISION}|{self.model}|{self.upsample}|{self.min_face}|{self.min_face_fraction:.4f}"
                f"|{self.encoder}")


@dataclass(frozen=True)
class MatchSettings:
    """How faces are named: `tolerance`, the largest distance still given a name; `method`, "nearest"
    (the nearest photo names the face) or "knn" (the `k` nearest photos vote; None: sqrt of the photos)."""

    tolerance: float = 0.6
    method: str = "nearest"
    k: int | None = None
