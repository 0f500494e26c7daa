"""EXPERIMENT (issue 11): dlib's CNN face detector with its convolutions on ONNX Runtime
finds the same faces as dlib.cnn_face_detection_model_v1, with the same confidences."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

import cv2  # noqa: E402
import dlib  # noqa: E402

from facewire.faces import model_files, onnx_detector  # noqa: E402
from facewire.process import ROOT  # noqa: E402

SHARED_TEST = (ROOT.parent / "shared" / "data" / "faces" / "test").resolve()
PICTURES = [ROOT / "test_images" / "grace_hopper.jpg", SHARED_TEST / "two_people.jpg",
            SHARED_TEST / "obama-720p.jpg"]
WIDTH = 640
"""dlib's detector takes seconds per picture here: pictures are reduced to this width."""


def _rgb(path) -> np.ndarray:
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    if rgb.shape[1] > WIDTH:
        size = (WIDTH, round(rgb.shape[0] * WIDTH / rgb.shape[1]))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return rgb


@pytest.fixture(scope="module")
def detectors():
    path = str(model_files.model_file(model_files.CNN_DETECTOR))
    return onnx_detector.OnnxFaceDetector(path), dlib.cnn_face_detection_model_v1(path)


@pytest.mark.slow
@pytest.mark.parametrize("path", PICTURES, ids=lambda p: p.name)
def test_same_faces_as_dlib(detectors, path):
    if not path.exists():
        pytest.skip(f"{path} not found")
    ours, theirs = detectors
    rgb = _rgb(path)
    expected = [((d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()), d.confidence)
                for d in theirs(rgb, 0)]
    found = [(d.rect, d.confidence) for d in ours.detect(rgb)]
    assert expected, "dlib finds no face: a poor test picture"
    assert [rect for rect, _ in found] == [rect for rect, _ in expected]
    worst = max(abs(a - b) for (_, a), (_, b) in zip(found, expected))
    print(f"{path.name}: {len(found)} faces, worst confidence difference {worst:.1e}")
    assert worst <= 1e-4


def test_pyramid_layout_keeps_levels_apart():
    rects, (height, width) = onnx_detector.pyramid_layout(360, 640, padding=10, outer=11)
    assert rects[0] == (11, 11, 650, 370) and width == 662
    assert [r[2] - r[0] + 1 for r in rects[:3]] == [640, 533, 444]
    for i, a in enumerate(rects):
        assert 0 <= a[0] and a[2] < width and 0 <= a[1] and a[3] < height
        assert not any(onnx_detector.overlaps(a, b, 0.0, 1.0) for b in rects[i + 1:])


def test_pyramid_drops_levels_that_would_overlap_the_image():
    """At 640x376 dlib tiles 22 of the 23 levels (counted with dlib's own code): the last, 5x10,
    would overlap the full-size image."""
    assert len(onnx_detector.pyramid_sizes(376, 640)) == 23
    rects, _ = onnx_detector.pyramid_layout(376, 640, padding=10, outer=11)
    assert len(rects) == 22 and rects[-1] == (639, 401, 650, 406)
