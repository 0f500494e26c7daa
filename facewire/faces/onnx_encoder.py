"""Encode faces with dlib's face recognition network on ONNX Runtime (see onnx_model.py).

    encoder = OnnxFaceEncoder()                      # converts the model once, then cached
    encodings = encoder.encode(face_chips(rgb, shapes))

`face_chips` cuts 150x150 chips exactly as dlib's compute_face_descriptor does
(dlib.get_face_chips, padding 0.25); the model normalises them itself, so the runtime
input is the raw uint8 chips (N, 150, 150, 3) and the output matches dlib's descriptors
to about 1e-6 (tests/test_onnx.py checks 1e-4 on every test face).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import dlib
import numpy as np

from facewire.faces.model_files import INPUT_NAME, OUTPUT_NAME, cached_model

if TYPE_CHECKING:
    import onnxruntime as ort

CHIP_SIZE = 150
CHIP_PADDING = 0.25
"""dlib's compute_face_descriptor cuts chips of 150 px with 0.25 padding around the face."""


def session_options(threads: int = 1, level: ort.GraphOptimizationLevel | None = None) -> ort.SessionOptions:
    """One thread, sequential execution: the service scales with processes, not threads. With a second
    thread (for a core found idle), its threads sleep between runs rather than spin.

    `level`: the graph optimisation level (default: all)."""
    import onnxruntime as ort  # noqa: PLC0415 - see OnnxFaceEncoder

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL if level is None else level
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OnnxFaceEncoder:
    """dlib's 128-d face descriptor, computed by ONNX Runtime from 150x150 chips."""

    def __init__(self, model_path: str | Path | None = None, providers: Sequence[str] | None = None,
                 options: ort.SessionOptions | None = None) -> None:
        """`model_path` defaults to the cached conversion of face_recognition_models' .dat.

        onnxruntime is imported only here: importing it starts a thread, and the process that
        forks the workers must have none (see serve/forkserver.py)."""
        import onnxruntime as ort  # noqa: PLC0415

        path = Path(model_path) if model_path else cached_model()
        self.session = ort.InferenceSession(str(path), options or session_options(),
                                            providers=list(providers or ["CPUExecutionProvider"]))

    def providers(self) -> list[str]:
        """The execution providers the session runs on, in order."""
        return self.session.get_providers()

    def encode(self, chips: np.ndarray) -> np.ndarray:
        """(N, 150, 150, 3) uint8 RGB chips -> (N, 128) float64 encodings."""
        chips = np.ascontiguousarray(chips, dtype=np.uint8)
        if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"expected (N, {CHIP_SIZE}, {CHIP_SIZE}, 3) chips, got {chips.shape}")
        if len(chips) == 0:
            return np.zeros((0, 128))
        (descriptors,) = self.session.run([OUTPUT_NAME], {INPUT_NAME: chips})
        return descriptors.astype(np.float64)


def face_chips(rgb: np.ndarray, shapes: Iterable[dlib.full_object_detection]) -> np.ndarray:
    """Cut (N, 150, 150, 3) uint8 chips from an RGB image as dlib.get_face_chip does."""
    detections = dlib.full_object_detections()
    for shape in shapes:
        detections.append(shape)
    if len(detections) == 0:
        return np.zeros((0, CHIP_SIZE, CHIP_SIZE, 3), dtype=np.uint8)
    chips = dlib.get_face_chips(np.ascontiguousarray(rgb), detections, size=CHIP_SIZE, padding=CHIP_PADDING)
    return np.stack(chips)
