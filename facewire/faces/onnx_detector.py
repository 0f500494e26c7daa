"""EXPERIMENT: dlib's CNN face detector (mmod_human_face_detector.dat) on ONNX Runtime.

dlib's net_type is loss_mmod<con<1,9,9,1,1,rcon5<rcon5<rcon5<downsampler<
input_rgb_image_pyramid<pyramid_down<6>>>>>>>>. Only its convolutions go to ONNX
(`build_detector_onnx`: a float32 NCHW tensor of any size -> one score map). The rest
is numpy, following dlib: `tiled_pyramid` lays the image and its 5/6-scaled copies into
one tensor as input_rgb_image_pyramid does, and `OnnxFaceDetector.detect` turns scores
above 0 into 80x80 windows mapped back to the image, strongest first, with dlib's
non-max suppression. Not wired into the service; see tests/test_onnx_detector.py and
bench/bench_detector.py for how close and how fast it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from facewire.faces.dlib_dat import MMOD_FACE_DETECTOR_NET, Conv, DlibNet, Layer, load
from facewire.faces.onnx_encoder import session_options
from facewire.faces.onnx_model import OPSET, Graph, add_layers

Rect = tuple[int, int, int, int]
"""(left, top, right, bottom), inclusive, as dlib.rectangle."""

PYRAMID_RATE = 5 / 6
"""pyramid_down<6>: each level is 5/6 the size of the one before."""
MIN_LEVEL_HEIGHT = 5


def build_detector_onnx(net: DlibNet) -> onnx.ModelProto:
    """The detector's convolutions: "pyramid" (N, 3, H, W) float32 -> "scores" (N, 1, H', W')."""
    g = Graph()
    scores, _ = add_layers(g, net.layers, "pyramid", (3, None, None))
    g.nodes[-1].output[0] = "scores"
    graph = helper.make_graph(
        g.nodes, "dlib_mmod_face_detector",
        [helper.make_tensor_value_info("pyramid", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 1, "h", "w"])],
        g.initializers)
    opset = helper.make_opsetid("", OPSET)
    model = helper.make_model(graph, opset_imports=[opset], producer_name="facewire",
                              ir_version=helper.find_min_ir_version_for([opset]))
    onnx.checker.check_model(model)
    return model


# ---------------------------------------------------------------------------------------
# The tiled image pyramid (dlib's compute_tiled_image_pyramid_details and to_tensor)


def pyramid_sizes(rows: int, cols: int) -> list[tuple[int, int]]:
    """(rows, cols) of every level: floor(5/6 of the last) until shorter than 5 rows."""
    sizes = [(rows, cols)]
    while True:
        rows, cols = math.floor(PYRAMID_RATE * rows), math.floor(PYRAMID_RATE * cols)
        if rows * cols == 0 or rows < MIN_LEVEL_HEIGHT:
            return sizes
        sizes.append((rows, cols))


def pyramid_layout(rows: int, cols: int, padding: int, outer: int) -> tuple[list[Rect], tuple[int, int]]:
    """Where each level goes: down a first column, then back up a second; and the tensor size."""
    sizes = pyramid_sizes(rows, cols)
    total = sum(h + padding for h, _ in sizes) - 2 * padding
    height = prev_width = 0
    for h, w in sizes:
        if w <= cols - prev_width - padding and (height - rows) * 2 >= total - rows:
            break
        height += h + padding
        prev_width = w
    height -= padding
    rects = [(0, 0, w - 1, h - 1) for h, w in sizes]
    y, i = outer, 0
    while y < height + outer and i < len(sizes):
        h, w = sizes[i]
        rects[i] = (outer, y, outer + w - 1, y + h - 1)
        y += h + padding
        i += 1
    y -= padding
    while i < len(sizes):
        h, w = sizes[i]
        right, bottom = outer + cols - 1, y - 1
        rect = (right - w + 1, bottom - h + 1, right, bottom)
        if _intersects(rects[0], rect):
            break
        rects[i] = rect
        y -= h + padding
        i += 1
    return rects[:i], (height + 2 * outer, cols + 2 * outer)  # levels that did not fit are dropped


def _intersects(a: Rect, b: Rect) -> bool:
    return max(a[0], b[0]) <= min(a[2], b[2]) and max(a[1], b[1]) <= min(a[3], b[3])


def _rows(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Source row and fraction of each output row: y = -scale, then y += scale in double."""
    scale = (n_in - 1) / max(n_out - 1, 1)
    y = np.add.accumulate(np.r_[0.0, np.full(n_out - 1, scale)])
    return np.floor(y).astype(np.int64), y - np.floor(y)


def _columns(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Source column and float32 fraction of each output column, as dlib's SIMD loop finds them.

    Four lanes each step by 4 * scale, accumulated in float32; the loop stops at the first
    step where lane 3's right neighbour would leave the source. The columns after that take
    the scalar path (returned as the third value), with positions accumulated in double.
    """
    scale = (n_in - 1) / max(n_out - 1, 1)
    steps = n_out // 4 + 1
    lanes = [np.add.accumulate(np.r_[np.float32(-4 * scale + m * scale),
                                     np.full(steps, np.float32(4 * scale), dtype=np.float32)])[1:]
             for m in range(4)]
    x = np.stack(lanes, axis=1).ravel()  # column c = 4 * step + lane
    # by the last step lane 3 is past column n_out - 1, so its right neighbour has left the source
    simd = 4 * int(np.argmax(x[3::4].astype(np.int64) + 1 >= n_in))
    tail = np.add.accumulate(np.r_[-scale + simd * scale, np.full(max(n_out - simd, 0), scale)])[1:]
    x = np.r_[x[:simd], tail][:n_out]
    left = np.floor(x).astype(np.int64)
    return left, (x - left).astype(np.float32), simd


def _resize_bilinear(src: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """dlib's resize_image for float planes: bilinear, corner pixels of both images aligned.

    Follows dlib's arithmetic (float32 weights and sums, positions accumulated step by step)
    so that the pyramid matches dlib's to float rounding, not just to the formula.
    """
    top, ty = _rows(src.shape[1], rows)
    bottom = np.minimum(top + 1, src.shape[1] - 1)
    left, tx, simd = _columns(src.shape[2], cols)
    right = np.minimum(left + 1, src.shape[2] - 1)
    upper_rows, lower_rows = src[:, top], src[:, bottom]
    tl, tr = upper_rows[:, :, left], upper_rows[:, :, right]
    bl, br = lower_rows[:, :, left], lower_rows[:, :, right]
    tb = ty.astype(np.float32)[:, np.newaxis]
    inv_tb = (1 - ty).astype(np.float32)[:, np.newaxis]
    out = np.empty((src.shape[0], rows, cols), dtype=np.float32)
    s = slice(0, simd)
    lr, inv_lr = tx[s], np.float32(1) - tx[s]
    out[:, :, s] = ((inv_tb * inv_lr) * tl[:, :, s] + (inv_tb * lr) * tr[:, :, s]
                    + (tb * inv_lr) * bl[:, :, s] + (tb * lr) * br[:, :, s])
    s = slice(simd, cols)
    lr, inv_lr = tx[s], np.float32(1) - tx[s]
    upper = (inv_lr * tl[:, :, s] + lr * tr[:, :, s]).astype(np.float64)
    lower = (inv_lr * bl[:, :, s] + lr * br[:, :, s]).astype(np.float64)
    out[:, :, s] = (1 - ty)[:, np.newaxis] * upper + ty[:, np.newaxis] * lower
    return out


def tiled_pyramid(rgb: np.ndarray, mean_rgb: Sequence[float], padding: int = 10, outer: int = 11,
                  ) -> tuple[np.ndarray, list[Rect]]:
    """(1, 3, H, W) float32: (pixel - mean) / 256, and its smaller copies, tiled as dlib tiles them."""
    rows, cols = rgb.shape[:2]
    rects, (height, width) = pyramid_layout(rows, cols, padding, outer)
    tensor = np.zeros((3, height, width), dtype=np.float32)
    mean = np.asarray(mean_rgb, dtype=np.float32)
    level = ((rgb.astype(np.float32) - mean) / np.float32(256)).transpose(2, 0, 1)
    for i, (left, top, right, bottom) in enumerate(rects):
        if i:
            level = _resize_bilinear(level, bottom - top + 1, right - left + 1)
        tensor[:, top:bottom + 1, left:right + 1] = level
    return tensor[np.newaxis], rects


# ---------------------------------------------------------------------------------------
# From scores to detections (dlib's loss_mmod_::to_label)


def output_to_input(layers: Sequence[Layer], x: float, y: float) -> tuple[float, float]:
    """A score map position in pyramid tensor coordinates, through each conv from the last."""
    for layer in reversed(layers):
        if isinstance(layer, Conv):
            rows, cols = layer.weights.shape[2:]
            x = x * layer.stride[1] - layer.padding[1] + cols // 2
            y = y * layer.stride[0] - layer.padding[0] + rows // 2
    return x, y


def _round(value: float) -> int:
    """std::lround: halves away from zero."""
    return int(math.floor(value + 0.5)) if value >= 0 else -int(math.floor(-value + 0.5))


def _nearest_level(rects: list[Rect], x: float, y: float) -> int:
    """dlib's nearest_rect for the point (x, y) rounded as dlib rounds a dpoint to a point."""
    px, py = math.floor(x + 0.5), math.floor(y + 0.5)
    best, best_dist = 0, math.inf
    for i, (left, top, right, bottom) in enumerate(rects):
        nx, ny = min(max(px, left), right), min(max(py, top), bottom)
        if (nx, ny) == (px, py):
            return i
        dist = math.hypot(nx - px, ny - py)
        if dist < best_dist:
            best, best_dist = i, dist
    return best


def to_image(rects: list[Rect], box: tuple[float, float, float, float]) -> tuple[float, ...]:
    """dlib's tiled_pyramid_to_image: a box in the tensor to the original image's coordinates."""
    left, top, right, bottom = box
    level = _nearest_level(rects, (left + right) / 2, (top + bottom) / 2)
    ox, oy = rects[level][:2]
    coords = [left - ox, top - oy, right - ox, bottom - oy]
    for _ in range(level):
        coords = [c / PYRAMID_RATE + 0.3 for c in coords]
    return tuple(coords)


def _area(r: Rect) -> int:
    return max(0, r[2] - r[0] + 1) * max(0, r[3] - r[1] + 1)


def overlaps(a: Rect, b: Rect, iou: float, covered: float) -> bool:
    """dlib's test_box_overlap (its "union" is the box around both)."""
    inner = _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    if inner == 0:
        return False
    outer = _area((min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])))
    return inner / outer > iou or inner / _area(a) > covered or inner / _area(b) > covered


@dataclass(frozen=True)
class Detection:
    rect: Rect
    confidence: float


class OnnxFaceDetector:
    """dlib.cnn_face_detection_model_v1(img, 0) with the convolutions on ONNX Runtime."""

    def __init__(self, dat_path: str | Path, providers: Sequence[str] | None = None,
                 options: ort.SessionOptions | None = None) -> None:
        self.net = load(dat_path, MMOD_FACE_DETECTOR_NET)
        settings = self.net.loss.settings
        if len(settings["detector_windows"]) != 1 or settings.get("use_bounding_box_regression"):
            raise ValueError("only one detector window and no bounding box regression are supported")
        self.window = settings["detector_windows"][0][:2]
        self.nms = settings["overlaps_nms"]
        model = build_detector_onnx(self.net).SerializeToString()
        self.session = ort.InferenceSession(model, options or session_options(),
                                            providers=list(providers or ["CPUExecutionProvider"]))

    def pyramid(self, rgb: np.ndarray) -> tuple[np.ndarray, list[Rect]]:
        return tiled_pyramid(rgb, self.net.input.mean_rgb, *self.net.input.pyramid_padding)

    def scores(self, pyramid: np.ndarray) -> np.ndarray:
        """The score map (rows, cols) of a (1, 3, H, W) pyramid tensor."""
        return self.session.run(None, {"pyramid": pyramid})[0][0, 0]

    def detect(self, rgb: np.ndarray, threshold: float = 0.0) -> list[Detection]:
        """Faces in an RGB uint8 image, strongest first, as dlib finds them without upsampling."""
        pyramid, rects = self.pyramid(rgb)
        scores = self.scores(pyramid)
        width, height = self.window
        candidates = []
        for r, c in zip(*np.nonzero(scores > threshold)):
            x, y = output_to_input(self.net.layers, float(c), float(r))
            box = (x - (width - 1) / 2, y - (height - 1) / 2, x + (width - 1) / 2, y + (height - 1) / 2)
            rect = tuple(_round(v) for v in to_image(rects, box))
            candidates.append(Detection(rect, float(scores[r, c])))  # type: ignore[arg-type]
        candidates.sort(key=lambda d: d.confidence, reverse=True)
        kept: list[Detection] = []
        for candidate in candidates:
            if not any(overlaps(k.rect, candidate.rect, *self.nms) for k in kept):
                kept.append(candidate)
        return kept
