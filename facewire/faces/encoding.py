"""Encode faces: dlib's 5-point landmarks on each box, then dlib's face network (128-d) on the aligned chips.

The network runs on ONNX Runtime by default (onnx_encoder.py: the same encodings, several times faster
than dlib-bin), or in dlib itself (`encoder="dlib"`). Faces too small for the landmark model are encoded
from an enlarged copy of their surroundings (see SMALL_FACE), and as the mean of their chip's encoding
and its mirror image's (see MIRROR_FACE).
"""

from __future__ import annotations

import os
from functools import cache, partial
from pathlib import Path
from typing import Sequence

import cv2
import dlib
import numpy as np

from facewire.faces.machine_load import second_thread
from facewire.faces.model_files import LANDMARKS_5, RESNET, cached_model, model_file
from facewire.faces.onnx_encoder import OnnxFaceEncoder, face_chips, session_options
from facewire.faces.settings import Box, DetectorSettings

SMALL_FACE = 32
ENCODE_FACE = 80
MIRROR_FACE = SMALL_FACE
"""Faces narrower than SMALL_FACE px are encoded from a copy enlarged so that the face is
ENCODE_FACE px wide, where the 5-point landmarks fit better: on the small-face sets this names more
faces right than not enlarging, or enlarging to other sizes; faces of 32 px and more gain nothing
(bench/bench_accuracy.py --enlargements).

A face narrower than MIRROR_FACE px, whose one chip's encoding is the noisiest, is encoded as the mean of
its chip's encoding and its mirror image's: a face and its mirror image are the same person, and the
mean is nearer that person's other photos (on the small-face sets, more faces named right and none
wrongly; mirroring every face, or every gallery face, named some strangers)."""


@cache
def landmarks_5() -> dlib.shape_predictor:
    return dlib.shape_predictor(str(model_file(LANDMARKS_5)))


@cache
def face_encoder() -> dlib.face_recognition_model_v1:
    return dlib.face_recognition_model_v1(str(model_file(RESNET)))


@cache
def onnx_model() -> Path:
    """The converted network, checked against dlib's .dat once per process: a worker forked after
    `load(..., fork_safe=True)` inherits the answer."""
    return cached_model()


@cache
def onnx_face_encoder(providers: tuple[str, ...] = (), threads: int = 1, process: int = 0) -> OnnxFaceEncoder:
    """dlib's network on ONNX Runtime with `threads` intra-op threads: sessions of this process (`process`,
    its pid: a forked child makes its own, after the fork)."""
    return OnnxFaceEncoder(onnx_model(), providers or None, session_options(threads))


def dlib_description() -> str:
    """Which dlib this process runs, for the start-up log."""
    return (
        f"dlib {dlib.__version__} (AVX {'on' if dlib.USE_AVX_INSTRUCTIONS else 'off'}, "
        f"BLAS {'on' if dlib.DLIB_USE_BLAS else 'off'}, CUDA {'on' if dlib.DLIB_USE_CUDA else 'off'})"
    )


def encoder_description(settings: DetectorSettings) -> str:
    """Which encoder runs, for the start-up log."""
    if settings.encoder == "dlib":
        return "dlib's face_recognition_model_v1"
    return f"dlib's network on ONNX Runtime ({', '.join(_session(settings, 1).providers())})"


def load(settings: DetectorSettings, fork_safe: bool = False) -> None:
    """Load the landmark model and the encoder now; with `fork_safe` the ONNX model is converted and cached
    but no ONNX Runtime session is made: each worker makes its own after the fork."""
    landmarks_5()
    if settings.encoder == "dlib":
        face_encoder()
    elif fork_safe:
        onnx_model()
    else:
        _session(settings, 1)


def encode_faces(rgb: np.ndarray, boxes: Sequence[Box], settings: DetectorSettings) -> np.ndarray:
    """128-d encodings of the faces in `boxes`, as an (n, 128) array, in one batched call
    of the encoder `settings` names.

    A face narrower than SMALL_FACE px is encoded from its surroundings enlarged so that the
    face is ENCODE_FACE px wide (0: never enlarge), and with its mirror image (see MIRROR_FACE).
    """
    if not boxes:
        return np.empty((0, 128))
    chips = np.concatenate([face_chips(picture, [shape]) for picture, shape in map(partial(_aligned, rgb), boxes)])
    mirror = np.array([box[1] - box[3] < MIRROR_FACE for box in boxes])
    batch = np.concatenate([chips, chips[mirror, :, ::-1]])
    if settings.encoder == "dlib":
        encodings = np.array(face_encoder().compute_face_descriptor(list(batch)))
    else:
        threads = 2 if second_thread(settings.detect_threads) else 1
        encodings = _session(settings, threads).encode(batch)
    own = encodings[:len(chips)].astype(np.float64)
    own[mirror] = (own[mirror] + encodings[len(chips):]) / 2
    return own


def _session(settings: DetectorSettings, threads: int) -> OnnxFaceEncoder:
    return onnx_face_encoder(settings.providers, threads, os.getpid())


def _aligned(rgb: np.ndarray, box: Box) -> tuple[np.ndarray, dlib.full_object_detection]:
    """The picture to cut a face's chip from (`rgb`, or an enlarged copy of a small face's surroundings),
    and the face's 5-point landmarks there."""
    width = box[1] - box[3]
    if ENCODE_FACE and width < SMALL_FACE:
        picture, rect = _enlarged(rgb, box, ENCODE_FACE / max(width, 1))
    else:
        top, right, bottom, left = box
        picture, rect = rgb, dlib.rectangle(left, top, right, bottom)
    return picture, landmarks_5()(picture, rect)


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
