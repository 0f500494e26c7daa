"""dlib's HOG face detector, scanned as finely as the smallest face worth finding needs.

The picture is resized so that the smallest face worth finding is HOG_MIN_FACE px, the size dlib's
HOG detector finds reliably: small pictures are upscaled, large ones reduced. Small pictures (scanned
at COLOUR_SCALE or more) are scanned in colour, large ones in grey. A large picture's pyramid is scanned
in two halves, in parallel when a core is idle (machine_load.second_thread).
"""

from __future__ import annotations

import math
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Sequence

import cv2
import dlib
import numpy as np

from facewire.faces import images
from facewire.faces.boxes import SAME_FACE_IOU, Detection, clipped
from facewire.faces.machine_load import second_thread
from facewire.faces.model_files import cache_dir, write_atomically
from facewire.faces.regions import scan_regions
from facewire.faces.settings import Box, DetectorSettings

HOG_MIN_FACE = 60
"""Smallest face box (px) that dlib's HOG detector finds reliably at scale 1 (measured)."""

COLOUR_SCALE = 3.0
"""Pictures scanned at this scale or more (short side up to 320 px, where scanning is cheap) are
scanned in colour: HOG then sees edges between colours of one brightness, and names more small faces
right than in grey (bench/bench_accuracy.py --scans). Grey costs a third less, which matters for large
pictures."""

PYRAMID_STEP = 5 / 6
"""dlib's HOG detector scans its picture at scales 1, 5/6, (5/6)^2, ... (pyramid_down<6>)."""
TRACKED_FACE = 1.5 * HOG_MIN_FACE
"""A tracked face's region is scanned at the coarsest of those scales where its face is still this
wide (px): the face may shrink by a third and still be found, and the region costs little."""
SAME_FACE_COVER = 0.8
"""Two boxes are one face when they overlap by boxes.SAME_FACE_IOU or one covers SAME_FACE_COVER of the other
(dlib's detector suppresses such boxes too: measured on its own output, 0.77 kept and 0.87 suppressed)."""
FINE_LEVELS = 2
"""With two threads, one scans the finest FINE_LEVELS levels of the HOG pyramid and the other the
rest, from dlib's own pyramid_down<6> image at that level: about half of the work each."""
SPLIT_PIXELS = 150_000
"""Pictures smaller than this (px, as scanned) take too little time to be worth a second thread."""


@cache
def hog_detector() -> dlib.fhog_object_detector:
    """dlib's HOG face detector (get_frontal_face_detector), from its own serialization cached per dlib
    version: loading that is far quicker than dlib decoding its built-in copy."""
    path = cache_dir() / f"frontal_face_detector-dlib-{dlib.__version__}.svm"
    try:
        return dlib.fhog_object_detector(str(path))
    except RuntimeError:  # not cached yet, or damaged: built again and saved for the next start
        detector = dlib.get_frontal_face_detector()
    with tempfile.TemporaryDirectory() as folder:
        detector.save(os.path.join(folder, "detector.svm"))
        try:
            write_atomically(path, Path(folder, "detector.svm").read_bytes())
        except OSError:
            pass  # a cache that cannot be written (a read-only home) costs time at each start, nothing else
    return detector


@cache
def fine_levels_detector() -> dlib.fhog_object_detector:
    """dlib's HOG face detector, limited to the finest FINE_LEVELS levels of its pyramid.

    Python cannot set a detector's `max_pyramid_levels`, so this edits it in the detector's
    serialization (dlib's integer format, right after the scanning window's size) and loads it back.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "detector.svm")
        hog_detector().save(path)
        with open(path, "rb") as file:
            data = file.read()
        header = bytes([1, 2, 1, 1, 1, 0, 1, 0, 1, 8, 1, 0, 1, 80, 1, 80])  # versions, cell 8, window 80x80
        levels = bytes([2, 0xE8, 0x03])  # max_pyramid_levels = 1000, as dlib 19 and 20 save it
        if not data.startswith(header + levels):
            raise RuntimeError(f"dlib {dlib.__version__} saves its HOG detector in a layout facewire does not "
                               "know, so it cannot split the scan")
        with open(path, "wb") as file:
            file.write(header + bytes([1, FINE_LEVELS]) + data[len(header) + len(levels):])
        return dlib.fhog_object_detector(path)


_helpers: dict[int, ThreadPoolExecutor] = {}


def helper_thread() -> ThreadPoolExecutor:
    """A thread of this process's own (a forked child makes its own: threads do not survive fork)."""
    if os.getpid() not in _helpers:
        _helpers[os.getpid()] = ThreadPoolExecutor(1, thread_name_prefix="hog")
    return _helpers[os.getpid()]


def load(settings: DetectorSettings, fork_safe: bool = False) -> None:
    """Load both detectors of the split scan (nothing here is unsafe to fork)."""
    hog_detector()
    fine_levels_detector()


def scan(image: np.ndarray, smallest_face: float, settings: DetectorSettings) -> list[Detection]:
    """Faces of `smallest_face` px or more (see `prepared`)."""
    height, width = image.shape[:2]
    work, scale, upsample = prepared(image, smallest_face, settings)
    if not upsample and work.shape[0] * work.shape[1] >= SPLIT_PIXELS:
        found = _in_two_halves(work, second_thread(settings.detect_threads))
    else:
        rects, scores, _ = hog_detector().run(work, upsample, 0.0)
        found = list(zip(scores, rects))
    return [Detection(scaled_box(rect, scale, height, width), float(score)) for score, rect in found]


def prepared(image: np.ndarray, smallest_face: float, settings: DetectorSettings) -> tuple[np.ndarray, float, int]:
    """The picture dlib's detectors scan, its scale and dlib's upsampling: `image` resized so that faces of
    `smallest_face` px are HOG_MIN_FACE px, in colour when small and grey when large; or, when
    `settings.upsample` is set, in grey at its own size for dlib's own upsampling."""
    if settings.upsample is not None:
        return images.to_grey(image), 1.0, settings.upsample
    height, width = image.shape[:2]
    scale = HOG_MIN_FACE / smallest_face
    work = images.to_rgb(image) if scale >= COLOUR_SCALE else images.to_grey(image)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(work, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR), scale, 0


def scan_near(image: np.ndarray, near: Sequence[Box], settings: DetectorSettings) -> list[Detection]:
    """Faces around the boxes `near` only, each region scanned at the level of the whole picture's pyramid
    where its face would be met (regions.scan_regions, region_smallest_face)."""
    return scan_regions(scan, region_smallest_face, image, near, settings)


def region_smallest_face(face: int, whole: float) -> float:
    """The smallest face to scan a tracked face's region for: the face at the coarsest level of the whole
    picture's pyramid (scales HOG_MIN_FACE / whole * PYRAMID_STEP^k) where it is still TRACKED_FACE px wide."""
    scale = HOG_MIN_FACE / whole
    steps = max(0, math.floor(math.log(TRACKED_FACE / (face * scale)) / math.log(PYRAMID_STEP))) if face else 0
    return HOG_MIN_FACE / (scale * PYRAMID_STEP ** steps)


def _in_two_halves(work: np.ndarray, parallel: bool) -> list[tuple[float, dlib.rectangle]]:
    """dlib's HOG detector on `work`, its pyramid in two halves: the FINE_LEVELS finest levels here,
    the coarse ones on a helper thread when `parallel` (dlib releases the GIL), else after them;
    merged as dlib merges its levels: by score, dropping a box that is the same face as a better
    one. The same detections as one call, with boxes that may differ by a pixel (rounded from
    another level); the same boxes whether or not the halves ran in parallel."""
    pyramid = dlib.pyramid_down(6)
    coarse = work
    for _ in range(FINE_LEVELS):
        coarse = pyramid(coarse)
    coarse_job = helper_thread().submit(hog_detector().run, coarse, 0, 0.0) if parallel else None
    fine_rects, fine_scores, _ = fine_levels_detector().run(work, 0, 0.0)
    coarse_rects, coarse_scores, _ = coarse_job.result() if parallel else hog_detector().run(coarse, 0, 0.0)
    coarse_rects = [pyramid.rect_up(rect, FINE_LEVELS) for rect in coarse_rects]
    found = sorted(zip([*fine_scores, *coarse_scores], [*fine_rects, *coarse_rects]), key=lambda pair: -pair[0])
    kept: list[tuple[float, dlib.rectangle]] = []
    for score, rect in found:
        if not any(_same_face(rect, other) for _, other in kept):
            kept.append((score, rect))
    return kept


def _same_face(a: dlib.rectangle, b: dlib.rectangle) -> bool:
    """Whether two boxes are one face: they overlap by SAME_FACE_IOU, or one covers SAME_FACE_COVER of the other."""
    inner = a.intersect(b)
    overlap = 0 if inner.is_empty() else inner.area()
    union = a.area() + b.area() - overlap
    return overlap > SAME_FACE_IOU * union or overlap > SAME_FACE_COVER * min(a.area(), b.area())


def scaled_box(rect: dlib.rectangle, scale: float, height: int, width: int):  # -> Box
    """A dlib rectangle found in a picture resized by `scale`, in the original's pixels, clipped to it."""
    return clipped((rect.top() / scale, rect.right() / scale, rect.bottom() / scale, rect.left() / scale),
                   height, width)
