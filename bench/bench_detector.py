#!/usr/bin/env python3
"""EXPERIMENT: dlib's CNN face detector, ms per 640x360 picture on ONE thread, dlib-bin vs ONNX.

    .venv/bin/python bench/bench_detector.py [--rounds 7]

The picture is ../shared/data/faces/test/obama-720p.jpg reduced to 640x360 (or the repo's
grace_hopper.jpg). dlib runs cnn_face_detection_model_v1(rgb, 0); the ONNX detector
(facewire/faces/onnx_detector.py) builds the same tiled pyramid in numpy, runs the convolutions on
ONNX Runtime and decodes the score map in Python; its three stages are timed apart too.
The configurations take turns round by round; each cell is the median over the rounds.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import dlib  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_encoder import cpu_model, interleaved_medians  # noqa: E402
from facewire.faces import model_files, onnx_detector  # noqa: E402

PHOTO = ROOT.parent / "shared" / "data" / "faces" / "test" / "obama-720p.jpg"


def picture() -> tuple[str, np.ndarray]:
    path = PHOTO if PHOTO.exists() else ROOT / "test_images" / "grace_hopper.jpg"
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    return path.name, cv2.resize(rgb, (640, 360), interpolation=cv2.INTER_AREA)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    name, rgb = picture()
    dat = str(model_files.model_file(model_files.CNN_DETECTOR))
    theirs = dlib.cnn_face_detection_model_v1(dat)
    ours = onnx_detector.OnnxFaceDetector(dat)
    pyramid, _ = ours.pyramid(rgb)
    ms = interleaved_medians({
        "dlib-bin": lambda: theirs(rgb, 0),
        "ONNX: whole detect()": lambda: ours.detect(rgb),
        "ONNX: numpy pyramid": lambda: ours.pyramid(rgb),
        "ONNX: convolutions (ONNX Runtime)": lambda: ours.scores(pyramid),
    }, args.rounds)
    print(f"CPU: {cpu_model()}; dlib {dlib.__version__}, onnxruntime {ort.__version__}; one thread; "
          f"{name} at 640x360 (pyramid tensor {pyramid.shape[2]}x{pyramid.shape[3]}); "
          f"median of {args.rounds} interleaved rounds\n")
    print("| detector | ms per picture | vs dlib-bin |\n|---|---|---|")
    for label, value in ms.items():
        print(f"| {label} | {value:.0f} | {ms['dlib-bin'] / value:.1f}x |")


if __name__ == "__main__":
    main()
