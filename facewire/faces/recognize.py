"""Find and encode faces in an image (matching them is matching.py's job).

Detection runs on a grey, resized copy chosen so that the smallest face worth
finding is just large enough for dlib's HOG detector: small images are upscaled
(down to 15 px faces), large ones reduced. Encoding runs on the full-resolution RGB
image, except that faces too small for the landmark model are encoded from an
enlarged copy of their surroundings (see SMALL_FACE). dlib's face recognition network
runs on ONNX Runtime by default (onnx_encoder.py: the same encodings, several times
faster than dlib-bin), or in dlib itself (`encoder="dlib"`).
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Sequence

import cv2
import dlib
import numpy as np

from facewire.faces import images
from facewire.faces.model_files import (
    CNN_DETECTOR,
    LANDMARKS_5,
    RESNET,
    cache_dir,
    cached_model,
    model_file,
    write_atomically,
)
from facewire.faces.onnx_encoder import OnnxFaceEncoder, face_chips
from facewire.faces.settings import Box, DetectorSettings

HOG_MIN_FACE = 60
"""Smallest face box (px) that dlib's HOG detector finds reliably at scale 1 (measured)."""

COLOUR_SCALE = 3.0
"""Pictures scanned at this scale or more (short side up to 320 px, where scanning is cheap) are
scanned in colour: HOG then sees edges between colours of one brightness, and on the small-face
sets names 372 faces right against 364 in grey (bench/bench_accuracy.py --scans). Grey costs a third
less, which matters for large pictures."""

SMALL_FACE = 32
ENCODE_FACE = 80
"""Faces narrower than SMALL_FACE px are encoded from a copy enlarged so that the face is
ENCODE_FACE px wide, where the 5-point landmarks fit better. On the small-face sets this
names 372 faces right against 362 without enlarging (40 px: 364, 60: 368, 120: 370,
160: 372); faces of 32 px and more gain nothing (bench/bench_accuracy.py --enlargements)."""

REGION_MARGIN = 1.5
"""detect_faces_near looks for a tracked face within this many face-widths of its last box."""
PYRAMID_STEP = 5 / 6
"""dlib's HOG detector scans its picture at scales 1, 5/6, (5/6)^2, ... (pyramid_down<6>)."""
TRACKED_FACE = 1.5 * HOG_MIN_FACE
"""detect_faces_near scans a region at the coarsest of those scales where its face is still this
wide (px): the face may shrink by a third and still be found, and the region costs little."""
SAME_FACE_IOU = 0.5
"""Two boxes that overlap this much (intersection over union) are one face."""
SAME_FACE_COVER = 0.8
"""...and so are two boxes one of which covers this much of the other (dlib's detector suppresses
such boxes too: measured on its own output, 0.77 kept and 0.87 suppressed)."""
FINE_LEVELS = 2
"""With two threads, one scans the finest FINE_LEVELS levels of the HOG pyramid and the other the
rest, from dlib's own pyramid_down<6> image at that level: 1.69 and 1.58 units of work of 3.27."""
SPLIT_PIXELS = 150_000
"""Pictures smaller than this (px, as scanned) take too little time to be worth a second thread."""

@dataclass(frozen=True)
class Face:
    """One detected face: its box and 128-d encoding."""

    box: Box
    encoding: np.ndarray


@cache
def hog_detector() -> dlib.fhog_object_detector:
    """dlib's HOG face detector (get_frontal_face_detector), from its own serialization cached per dlib version:
    loading that takes 2 ms, where dlib decodes its built-in copy in 0.4 s (once per cache)."""
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
            pass  # a cache that cannot be written (a read-only home) costs 0.4 s a start, nothing else
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


@cache
def cnn_detector() -> dlib.cnn_face_detection_model_v1:
    return dlib.cnn_face_detection_model_v1(str(model_file(CNN_DETECTOR)))


@cache
def landmarks_5() -> dlib.shape_predictor:
    return dlib.shape_predictor(str(model_file(LANDMARKS_5)))


@cache
def face_encoder() -> dlib.face_recognition_model_v1:
    return dlib.face_recognition_model_v1(str(model_file(RESNET)))


def dlib_description() -> str:
    """Which dlib this process runs, for the start-up log."""
    return (
        f"dlib {dlib.__version__} (AVX {'on' if dlib.USE_AVX_INSTRUCTIONS else 'off'}, "
        f"BLAS {'on' if dlib.DLIB_USE_BLAS else 'off'}, CUDA {'on' if dlib.DLIB_USE_CUDA else 'off'})"
    )


@cache
def onnx_model() -> Path:
    """The converted network, checked against dlib's .dat once per process (hashing it takes
    0.1 s): a worker forked after `load_models(..., fork_safe=True)` inherits the answer."""
    return cached_model()


@cache
def onnx_face_encoder(providers: tuple[str, ...] = ()) -> OnnxFaceEncoder:
    """dlib's network on ONNX Runtime: one session per process, made after any fork."""
    return OnnxFaceEncoder(onnx_model(), providers or None)


def encoder_description(settings: DetectorSettings) -> str:
    """Which encoder runs, for the start-up log."""
    if settings.encoder == "dlib":
        return "dlib's face_recognition_model_v1"
    return f"dlib's network on ONNX Runtime ({', '.join(onnx_face_encoder(settings.providers).providers())})"


def load_models(settings: DetectorSettings, fork_safe: bool = False) -> None:
    """Load the models `settings` needs now, so the first request does not pay for it.

    These are face_recognition's model files and calls (face_recognition.api), minus the
    68-point landmark model it also loads at import and facewire never uses (0.36 s). With
    `fork_safe` (a process that will fork workers) the ONNX model is converted and cached
    but no ONNX Runtime session is made: each worker makes its own after the fork.
    """
    if settings.model == "cnn":
        cnn_detector()
    else:
        hog_detector()
        fine_levels_detector()
    landmarks_5()
    if settings.encoder == "dlib":
        face_encoder()
    elif fork_safe:
        onnx_model()
    else:
        onnx_face_encoder(settings.providers)


def detection_scale(height: int, width: int, settings: DetectorSettings) -> float:
    """Resize factor for detection so that the smallest face to find reaches HOG_MIN_FACE."""
    smallest_face = max(settings.min_face, min(height, width) * settings.min_face_fraction)
    return HOG_MIN_FACE / smallest_face


def detect_faces(image: np.ndarray, settings: DetectorSettings) -> list[Box]:
    """Locate faces in a grey, BGR or BGRA image; boxes are in its coordinates, clipped to it.

    Small pictures (scanned at COLOUR_SCALE or more) are scanned in colour, large ones in grey.
    """
    height, width = image.shape[:2]
    return _scan(image, detection_scale(height, width, settings), settings)


def detect_faces_near(image: np.ndarray, near: Sequence[Box], settings: DetectorSettings) -> list[Box]:
    """Locate faces only around the boxes `near`, each grown by REGION_MARGIN face-widths on every side.

    A region is scanned at one of the scales of the whole image's detection pyramid
    (`region_scale`), so a face that stayed near its box is found at the scale and with
    the box a full scan gives it; a face elsewhere is not found. A face found from two
    overlapping regions is kept once.
    """
    height, width = image.shape[:2]
    scale = detection_scale(height, width, settings)
    found: list[Box] = []
    for top, right, bottom, left in near:
        size = max(right - left, bottom - top)
        margin = round(size * REGION_MARGIN)
        y0, x0 = max(0, top - margin), max(0, left - margin)
        region = image[y0:min(height, bottom + margin + 1), x0:min(width, right + margin + 1)]
        for t, r, b, l in _scan(region, region_scale(size, scale), settings):
            box = (t + y0, r + x0, b + y0, l + x0)
            if all(iou(box, other) < SAME_FACE_IOU for other in found):
                found.append(box)
    return found


def region_scale(face: int, scale: float) -> float:
    """The coarsest scale scale*PYRAMID_STEP^k (k >= 0) at which a face `face` px wide is still
    TRACKED_FACE px wide: the pyramid level where a whole-image scan would meet it, give or take."""
    steps = max(0, math.floor(math.log(TRACKED_FACE / (face * scale)) / math.log(PYRAMID_STEP))) if face else 0
    return scale * PYRAMID_STEP ** steps


def _scan(image: np.ndarray, scale: float, settings: DetectorSettings) -> list[Box]:
    """Run the detector on `image` resized by `scale` (or with dlib's own upsampling, when set)."""
    height, width = image.shape[:2]
    if settings.upsample is not None:
        scale, upsample, work = 1.0, settings.upsample, images.to_grey(image)
    else:
        upsample = 0
        work = images.to_rgb(image) if scale >= COLOUR_SCALE else images.to_grey(image)
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        work = cv2.resize(work, size, interpolation=interpolation)
    if settings.model == "cnn":
        rects = [d.rect for d in cnn_detector()(work, upsample)]
    elif not upsample and work.shape[0] * work.shape[1] >= SPLIT_PIXELS:
        rects = _hog_in_two_halves(work, _parallel(settings))
    else:
        rects = hog_detector()(work, upsample)
    return [_scaled_box(rect, scale, height, width) for rect in rects]


def _parallel(settings: DetectorSettings) -> bool:
    """Whether to scan the two halves of the pyramid on two threads (see DetectorSettings.detect_threads)."""
    return settings.detect_threads == "2" or settings.detect_threads == "auto" and idle_core()


def idle_core(looks: int = 4, interval: float = 0.0005) -> bool:
    """Whether a core of this machine is idle now: whether, at one of `looks` moments `interval` s
    apart, the threads runnable elsewhere left a core for each of two threads here. Several looks,
    because a thread about to sleep (the client that just sent this request) is runnable for a
    moment; a busy worker is runnable at every look. On a busy machine a second thread only slows
    the other workers down."""
    spare = len(os.sched_getaffinity(0)) - 2
    for look in range(looks):
        if look:
            time.sleep(interval)
        if _runnable_elsewhere() <= spare:
            return True
    return False


def _runnable_elsewhere() -> int:
    """Threads runnable on this machine now that are not this process's; a large number when
    /proc cannot tell."""
    try:
        return _runnable_on_machine() - sum(_task_state(task.path) == "R" for task in os.scandir("/proc/self/task"))
    except (OSError, ValueError, IndexError):
        return 1 << 30


def _runnable_on_machine() -> int:
    """Threads runnable on this machine now, this process's included (/proc/loadavg's fourth field)."""
    with open("/proc/loadavg") as file:
        return int(file.read().split()[3].split("/")[0])


def _task_state(task: str) -> str:
    """A thread's state letter ("R" runnable) from /proc/PID/task/TID/stat; "" if it has ended."""
    try:
        with open(os.path.join(task, "stat")) as file:
            return file.read().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return ""


def _hog_in_two_halves(work: np.ndarray, parallel: bool) -> list[dlib.rectangle]:
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
    kept: list[dlib.rectangle] = []
    for _, rect in found:
        if not any(_same_face(rect, other) for other in kept):
            kept.append(rect)
    return kept


def _same_face(a: dlib.rectangle, b: dlib.rectangle) -> bool:
    """Whether two boxes are one face: they overlap by SAME_FACE_IOU, or one covers SAME_FACE_COVER of the other."""
    inner = a.intersect(b)
    overlap = 0 if inner.is_empty() else inner.area()
    union = a.area() + b.area() - overlap
    return overlap > SAME_FACE_IOU * union or overlap > SAME_FACE_COVER * min(a.area(), b.area())


def _scaled_box(rect: dlib.rectangle, scale: float, height: int, width: int) -> Box:
    top, right = round(rect.top() / scale), round(rect.right() / scale)
    bottom, left = round(rect.bottom() / scale), round(rect.left() / scale)
    return (max(top, 0), min(right, width - 1), min(bottom, height - 1), max(left, 0))


def encode_faces(rgb: np.ndarray, boxes: Sequence[Box], settings: DetectorSettings) -> np.ndarray:
    """128-d encodings of the faces in `boxes`, as an (n, 128) array, in one batched call
    of the encoder `settings` names.

    A face narrower than SMALL_FACE px is encoded from its surroundings enlarged so that the
    face is ENCODE_FACE px wide (0: never enlarge).
    """
    if not boxes:
        return np.empty((0, 128))
    pictures, shapes, order = [rgb], [dlib.full_object_detections()], []
    for box in boxes:
        width = box[1] - box[3]
        if ENCODE_FACE and width < SMALL_FACE:
            picture, rect = _enlarged(rgb, box, ENCODE_FACE / max(width, 1))
            pictures.append(picture)
            shapes.append(dlib.full_object_detections())
            order.append((len(pictures) - 1, 0))
        else:
            top, right, bottom, left = box
            picture, rect = rgb, dlib.rectangle(left, top, right, bottom)
            order.append((0, len(shapes[0])))
        shapes[order[-1][0]].append(landmarks_5()(picture, rect))
    if settings.encoder == "dlib":
        batches = face_encoder().compute_face_descriptor(pictures, shapes)
        return np.array([batches[picture][face] for picture, face in order])
    chips = [face_chips(picture, found) for picture, found in zip(pictures, shapes)]
    first = np.cumsum([0, *(len(found) for found in chips)])
    encodings = onnx_face_encoder(settings.providers).encode(np.concatenate(chips))
    return encodings[[first[picture] + face for picture, face in order]]


def _enlarged(rgb: np.ndarray, box: Box, factor: float) -> tuple[np.ndarray, dlib.rectangle]:
    """The face and one face-width around it, enlarged `factor` times, and the face's box there."""
    top, right, bottom, left = box
    margin = right - left
    y0, x0 = max(0, top - margin), max(0, left - margin)
    crop = rgb[y0:bottom + margin + 1, x0:right + margin + 1]
    picture = cv2.resize(crop, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
    rect = dlib.rectangle(round((left - x0) * factor), round((top - y0) * factor),
                          round((right - x0) * factor), round((bottom - y0) * factor))
    return picture, rect


def find_faces(image: np.ndarray, settings: DetectorSettings) -> list[Face]:
    """Detect and encode every face of a grey, BGR or BGRA image."""
    boxes = detect_faces(image, settings)
    if not boxes:
        return []
    return [Face(box, enc) for box, enc in zip(boxes, encode_faces(images.to_rgb(image), boxes, settings))]


def box_area(box: Box) -> int:
    top, right, bottom, left = box
    return max(0, bottom - top) * max(0, right - left)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (0 when they do not overlap)."""
    inner = (max(a[0], b[0]), min(a[1], b[1]), min(a[2], b[2]), max(a[3], b[3]))
    overlap = box_area(inner) if inner[0] < inner[2] and inner[3] < inner[1] else 0
    union = box_area(a) + box_area(b) - overlap
    return overlap / union if union else 0.0
