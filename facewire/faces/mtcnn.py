"""MTCNN face detection (Zhang et al. 2016) on ONNX Runtime, vectorised from end to end.

Three networks in cascade (mtcnn_model.py): P-Net scans an image pyramid for 12x12 face windows, R-Net
re-scores and refines those proposals in one batch, O-Net does so again and adds five landmarks. Between the
stages, non-maximum suppression (OpenCV's NMSBoxes, one call per stage) and squaring of the boxes, as in the
authors' code. The pyramid starts at the scale where the smallest face worth finding is 12 px (the caller's
scale policy) and shrinks by 0.709 until P-Net's window no longer fits.

    detector = MtcnnDetector()                       # sessions made now: after any fork
    found = detector.detect(rgb, smallest=20)        # boxes, scores, landmarks

`scan` is facewire's detector signature (detection.py): its boxes are MTCNN's landmarks mapped to the box
dlib's HOG detector would draw (`dlib_box`), which is what dlib's landmark model, and so the encoder, expects.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import cv2
import numpy as np

from facewire.faces import images
from facewire.faces.boxes import Detection, clipped, smallest_face
from facewire.faces.machine_load import second_thread
from facewire.faces.settings import Box, DetectorSettings

if TYPE_CHECKING:
    import onnxruntime as ort

WINDOW = 12
"""P-Net's window (px) and R-Net's and O-Net's input sides."""
STRIDE = 2
PYRAMID_FACTOR = 0.709
RNET_SIDE, ONET_SIDE = 24, 48
DLIB_BOX = (0.0106, 0.0, 1.1228)
"""dlib's box from MTCNN's (dlib_box): its centre's offset from the landmarks' origin, in sides, and its
side, in MTCNN box widths. Fitted by least squares on every face both detectors find in the shared photos
(bench/fit_box_mapping.py, which also measures the encodings' distance between the two routes)."""
SPLIT_PIXELS = 40_000
"""Pictures whose first pyramid level is smaller than this (px) take too little time to be worth a second thread."""
TRACKED_SQUARE = (-0.012, -0.087, 1.195)
"""The square R-Net is given for a face, from dlib's box around it: its centre's offset in dlib box sides
and its side in dlib box sides (bench/fit_box_mapping.py)."""
TRACK_MOVES = ((0.0, 0.0, 1.0), (-0.12, 0.0, 1.0), (0.12, 0.0, 1.0), (0.0, -0.12, 1.0), (0.0, 0.12, 1.0),
               (0.0, 0.0, 0.85), (0.0, 0.0, 1.18))
"""Where a tracked face is looked for: its square, moved by (dx, dy) sides and scaled."""


@dataclass(frozen=True)
class Thresholds:
    """Each stage's face probability threshold and each NMS's overlap threshold (the authors' values)."""

    pnet: float = 0.6
    rnet: float = 0.7
    onet: float = 0.7
    nms_level: float = 0.5
    nms_pyramid: float = 0.7
    nms_rnet: float = 0.7
    nms_onet: float = 0.7


@dataclass(frozen=True)
class Found:
    """Faces found in one image: boxes (n, 4) as x1, y1, x2, y2 floats in its pixels, scores (n,) and
    landmarks (n, 5, 2): (x, y) of the left eye, right eye, nose, left and right mouth corner, as seen."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    @classmethod
    def none(cls) -> Found:
        return cls(np.empty((0, 4), np.float32), np.empty(0, np.float32), np.empty((0, 5, 2), np.float32))


class MtcnnDetector:
    """The three networks in ONNX Runtime sessions of this process (one intra-op thread each by default)."""

    def __init__(self, models: dict[str, Path] | None = None, providers: Sequence[str] | None = None,
                 options: ort.SessionOptions | None = None) -> None:
        import onnxruntime as ort  # noqa: PLC0415 - a supervisor imports this module without running it

        from facewire.faces.mtcnn_model import cached_models  # noqa: PLC0415
        from facewire.faces.onnx_encoder import session_options  # noqa: PLC0415

        models = models or cached_models()
        options = options or session_options()
        providers = list(providers or ["CPUExecutionProvider"])
        self.pnet, self.rnet, self.onet = (ort.InferenceSession(str(models[name]), options, providers=providers)
                                           for name in ("pnet", "rnet", "onet"))

    def detect(self, rgb: np.ndarray, smallest: float, thresholds: Thresholds = Thresholds()) -> Found:
        """Faces of at least `smallest` px in an RGB uint8 image, strongest first."""
        height, width = rgb.shape[:2]
        return self.follow(rgb, self.propose(rgb, scales(height, width, smallest), thresholds), thresholds)

    def follow(self, rgb: np.ndarray, candidates: np.ndarray, thresholds: Thresholds = Thresholds()) -> Found:
        """The faces R-Net and O-Net confirm among square candidate boxes (n, 4): P-Net's, or a tracker's."""
        if not len(candidates):
            return Found.none()
        boxes = self.refine(rgb, candidates, thresholds)
        if not len(boxes):
            return Found.none()
        return self.output(rgb, boxes, thresholds)

    def propose(self, rgb: np.ndarray, levels: Sequence[float], thresholds: Thresholds) -> np.ndarray:
        """P-Net over the pyramid: squared candidate boxes (n, 4) in image pixels, after both NMS rounds."""
        height, width = rgb.shape[:2]
        found, level = [], rgb
        for scale in levels:
            level = resized(level, (max(1, round(width * scale)), max(1, round(height * scale))))
            regression, probability = self.pnet.run(None, {"image": level[np.newaxis].astype(np.float32)})
            rows, cols = np.nonzero(probability[0] > thresholds.pnet)
            if not len(rows):
                continue
            windows = np.stack([cols * STRIDE, rows * STRIDE, cols * STRIDE + WINDOW - 1, rows * STRIDE + WINDOW - 1], 1)
            boxes = windows.astype(np.float32) / np.float32(scale)
            offsets = regression[0][:, rows, cols].T
            score = probability[0][rows, cols]
            keep = nms(boxes, score, thresholds.nms_level)
            found.append(np.concatenate([boxes[keep], offsets[keep], score[keep, np.newaxis]], 1))
        if not found:
            return np.empty((0, 4), np.float32)
        candidates = np.concatenate(found)
        keep = nms(candidates[:, :4], candidates[:, 8], thresholds.nms_pyramid)
        candidates = candidates[keep]
        return square(regress(candidates[:, :4], candidates[:, 4:8]))

    def refine(self, image: np.ndarray, boxes: np.ndarray, thresholds: Thresholds) -> np.ndarray:
        """R-Net on every candidate in one batch: the boxes it keeps, refined and squared."""
        regression, probability = self.rnet.run(None, {"image": crops(image, boxes, RNET_SIDE)})
        kept = probability > thresholds.rnet
        boxes, probability = regress(boxes[kept], regression[kept]), probability[kept]
        keep = nms(boxes, probability, thresholds.nms_rnet)
        return square(boxes[keep])

    def output(self, image: np.ndarray, boxes: np.ndarray, thresholds: Thresholds) -> Found:
        """O-Net on every refined box in one batch: final boxes, scores and landmarks."""
        regression, points, probability = self.onet.run(None, {"image": crops(image, boxes, ONET_SIDE)})
        kept = probability > thresholds.onet
        boxes, regression, points, probability = boxes[kept], regression[kept], points[kept], probability[kept]
        side = (boxes[:, 2:4] - boxes[:, 0:2] + 1)[:, np.newaxis, :]
        landmarks = np.stack([points[:, :5], points[:, 5:]], 2) * side + boxes[:, np.newaxis, 0:2] - 1
        boxes = regress(boxes, regression)
        keep = nms(boxes, probability, thresholds.nms_onet, by_smaller=True)
        return Found(boxes[keep], probability[keep], landmarks[keep].astype(np.float32))


def scales(height: int, width: int, smallest: float) -> list[float]:
    """The pyramid: the scale where a face of `smallest` px becomes P-Net's window, then PYRAMID_FACTOR smaller each
    level while the image's short side still holds a window."""
    scale, short, levels = WINDOW / max(smallest, 1.0), min(height, width), []
    while short * scale >= WINDOW:
        levels.append(scale)
        scale *= PYRAMID_FACTOR
    return levels


def regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Boxes moved by offsets given in box widths and heights (x1, y1, x2, y2), as the networks predict them."""
    size = boxes[:, 2:4] - boxes[:, 0:2] + 1
    return boxes + offsets * np.concatenate([size, size], 1)


def square(boxes: np.ndarray) -> np.ndarray:
    """Each box grown to a square around its centre, on its longer side, corners rounded down (the authors' rerec)."""
    size = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    centre = (boxes[:, 0:2] + boxes[:, 2:4]) / 2
    corner = np.floor(centre - size[:, np.newaxis] / 2)
    return np.concatenate([corner, corner + np.floor(size)[:, np.newaxis]], 1).astype(np.float32)


def resized(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` at `size` (width, height): a step of 0.709 bilinear; a larger reduction by pixel-area averaging,
    first halving the image as often as it stays twice the size (OpenCV's area averaging is several times
    quicker at a whole ratio, and the result the same)."""
    if size[0] * 2 > image.shape[1]:
        return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    while size[0] * 4 <= image.shape[1] and size[1] * 4 <= image.shape[0]:
        image = cv2.resize(image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def crops(image: np.ndarray, boxes: np.ndarray, side: int) -> np.ndarray:
    """Each box of an RGB uint8 image resampled to side x side (bilinear, zeros outside the image), all at once:
    one cv2.remap over a map that stacks every box's sampling grid. (n, side, side, 3) float32."""
    steps = (np.arange(side, dtype=np.float32) + 0.5) / side
    size = boxes[:, 2:4] - boxes[:, 0:2] + 1
    xs = boxes[:, 0:1] + steps * size[:, 0:1] - 0.5
    ys = boxes[:, 1:2] + steps * size[:, 1:2] - 0.5
    map_x = np.broadcast_to(xs[:, np.newaxis, :], (len(boxes), side, side)).reshape(-1, side)
    map_y = np.broadcast_to(ys[:, :, np.newaxis], (len(boxes), side, side)).reshape(-1, side)
    out = cv2.remap(image, np.ascontiguousarray(map_x), np.ascontiguousarray(map_y), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out.reshape(len(boxes), side, side, 3).astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, by_smaller: bool = False) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best first: a box is dropped when its
    overlap with a better kept box, over their union (or over the smaller box's area), exceeds `threshold`."""
    if not len(boxes):
        return np.empty(0, np.int64)
    if not by_smaller:
        rects = np.concatenate([boxes[:, 0:2], boxes[:, 2:4] - boxes[:, 0:2]], 1).astype(np.float64)
        return np.asarray(cv2.dnn.NMSBoxes(rects.tolist(), scores.astype(np.float64).tolist(), 0.0,
                                           threshold), dtype=np.int64).reshape(-1)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order, kept = np.argsort(-scores, kind="stable"), []
    while len(order):
        best, rest = order[0], order[1:]
        kept.append(best)
        inner = (np.clip(np.minimum(boxes[best, 2], boxes[rest, 2]) - np.maximum(boxes[best, 0], boxes[rest, 0]), 0, None)
                 * np.clip(np.minimum(boxes[best, 3], boxes[rest, 3]) - np.maximum(boxes[best, 1], boxes[rest, 1]), 0, None))
        order = rest[inner / np.maximum(np.minimum(area[best], area[rest]), 1e-9) <= threshold]
    return np.asarray(kept, dtype=np.int64)


_detectors: dict[tuple[int, tuple[str, ...], int], MtcnnDetector] = {}


def detector(settings: DetectorSettings, threads: int = 1) -> MtcnnDetector:
    """This process's detector with `threads` intra-op threads (a forked child makes its own sessions: they do
    not survive a fork)."""
    key = (os.getpid(), settings.providers, threads)
    if key not in _detectors:
        from facewire.faces.onnx_encoder import session_options  # noqa: PLC0415

        options = session_options(threads)
        options.enable_mem_pattern = False  # planned for one input shape, and every picture brings new ones
        _detectors[key] = MtcnnDetector(providers=settings.providers or None, options=options)
    return _detectors[key]


def load(settings: DetectorSettings, fork_safe: bool = False) -> None:
    """Convert the networks if need be, and (unless `fork_safe`) make this process's sessions."""
    from facewire.faces.mtcnn_model import cached_models  # noqa: PLC0415

    cached_models()
    if not fork_safe:
        detector(settings)


def raw_detect(rgb: np.ndarray, settings: DetectorSettings, smallest: float | None = None) -> Found:
    """MTCNN's own boxes, scores and landmarks (smallest face: the scale policy's, unless given). A large
    picture uses two threads when `settings.detect_threads` allows (machine_load.second_thread)."""
    height, width = rgb.shape[:2]
    smallest = smallest_face(height, width, settings) if smallest is None else smallest
    large = height * width * (WINDOW / smallest) ** 2 >= SPLIT_PIXELS
    threads = 2 if large and second_thread(settings.detect_threads) else 1
    return detector(settings, threads).detect(rgb, smallest, Thresholds(*settings.thresholds))


def scan(image: np.ndarray, smallest: float, settings: DetectorSettings) -> list[Detection]:
    """Faces of `smallest` px or more (MTCNN's box width), each with dlib's box (`dlib_box`)."""
    height, width = image.shape[:2]
    return _detections(raw_detect(images.to_rgb(image), settings, smallest), height, width)


def _detections(found: Found, height: int, width: int) -> list[Detection]:
    return [Detection(clipped(dlib_box(box, points), height, width), float(score), tuple(map(tuple, points.tolist())))
            for box, score, points in zip(found.boxes, found.scores, found.landmarks)]


def scan_near(image: np.ndarray, near: Sequence[Box], settings: DetectorSettings) -> list[Detection]:
    """Faces around the boxes `near` only, without a pyramid: each box, turned into the square R-Net would
    have been given for its face (`tracked_square`) and moved by each of TRACK_MOVES, is a candidate for
    R-Net and O-Net. A face that moved by up to about a fifth of its size is found; one elsewhere is not."""
    if not near:
        return []
    height, width = image.shape[:2]
    candidates = np.array([tracked_square(box, move) for box in near for move in TRACK_MOVES], np.float32)
    return _detections(detector(settings).follow(images.to_rgb(image), candidates, Thresholds(*settings.thresholds)),
                       height, width)


def tracked_square(box: Box, move: tuple[float, float, float] = (0.0, 0.0, 1.0)) -> np.ndarray:
    """The square (x1, y1, x2, y2) R-Net would be given for the face dlib's box `box` was drawn around
    (TRACKED_SQUARE), moved by (dx, dy) sides and scaled by s, for `move` = (dx, dy, s)."""
    top, right, bottom, left = box
    side = ((right - left) + (bottom - top)) / 2
    dx, dy, scale = TRACKED_SQUARE
    cx, cy = (left + right) / 2 + (dx + move[0]) * side, (top + bottom) / 2 + (dy + move[1]) * side
    half = scale * move[2] * side / 2
    return np.array([cx - half, cy - half, cx + half, cy + half])


def landmark_origin(points: np.ndarray) -> np.ndarray:
    """The point midway between the centre of the eyes and the centre of the mouth."""
    return (points[0:2].mean(0) + points[3:5].mean(0)) / 2


def dlib_box(box: np.ndarray, points: np.ndarray, coefficients: Sequence[float] | None = None,
             ) -> tuple[float, float, float, float]:
    """The (top, right, bottom, left) box dlib's detectors would draw around a face MTCNN found at `box`
    (x1, y1, x2, y2) with landmarks `points`: a square `side` times MTCNN's box width, centred at the
    landmarks' origin moved by (dx, dy) sides."""
    dx, dy, side = DLIB_BOX if coefficients is None else coefficients
    width = side * float(box[2] - box[0])
    cx, cy = landmark_origin(np.asarray(points, np.float64)) + np.array([dx, dy]) * width
    return cy - width / 2, cx + width / 2, cy + width / 2, cx - width / 2


def box_as_is(box: np.ndarray) -> tuple[float, float, float, float]:
    """MTCNN's (x1, y1, x2, y2) box as (top, right, bottom, left), unchanged."""
    x1, y1, x2, y2 = box
    return y1, x2, y2, x1
