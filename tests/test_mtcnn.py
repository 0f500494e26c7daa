"""MTCNN: the weights reader that never unpickles, the ONNX conversion against the package's own networks,
and the detector on real photos (recall, false boxes, landmarks, the box handed to dlib's encoder)."""

from __future__ import annotations

import io
import math
import os
import pickle
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import cv2
import lz4.frame
import numpy as np
import onnxruntime as ort
import pytest

from facewire.faces import detection, encoding, images, joblib_arrays, mtcnn, mtcnn_model
from facewire.faces.boxes import clipped, iou
from facewire.faces.joblib_arrays import WeightsError, read_arrays
from facewire.faces.settings import DetectorSettings

from .conftest import REPO_PROBES

MTCNN = DetectorSettings(detector="mtcnn", detect_threads="1")
HOG = DetectorSettings(detector="hog", detect_threads="1")
SHAPES = {
    "pnet": [(3, 3, 3, 10), (10,), (1, 1, 10), (3, 3, 10, 16), (16,), (1, 1, 16), (3, 3, 16, 32), (32,), (1, 1, 32),
             (1, 1, 32, 4), (4,), (1, 1, 32, 2), (2,)],
    "rnet": [(3, 3, 3, 28), (28,), (1, 1, 28), (3, 3, 28, 48), (48,), (1, 1, 48), (2, 2, 48, 64), (64,), (1, 1, 64),
             (576, 128), (128,), (128,), (128, 4), (4,), (128, 2), (2,)],
    "onet": [(3, 3, 3, 32), (32,), (1, 1, 32), (3, 3, 32, 64), (64,), (1, 1, 64), (3, 3, 64, 64), (64,), (1, 1, 64),
             (2, 2, 64, 128), (128,), (1, 1, 128), (1152, 256), (256,), (256,), (256, 4), (4,), (256, 10), (10,),
             (256, 2), (2,)],
}


# --- the weights reader ------------------------------------------------------------------------------


@pytest.mark.parametrize("network", mtcnn_model.NETWORKS)
def test_the_packages_weights_read_as_float32_arrays_of_the_keras_layers_shapes(network):
    arrays = read_arrays(mtcnn_model.weights_file(network))
    assert [a.shape for a in arrays] == SHAPES[network]
    assert all(a.dtype == np.float32 and np.isfinite(a).all() for a in arrays)


class Payload:
    """What an attacker's weight file would run on unpickling: it creates a file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def crafted(tmp_path: Path, content: object, compress: bool) -> Path:
    data = pickle.dumps(content, protocol=4)
    path = tmp_path / "crafted.lz4"
    path.write_bytes(lz4.frame.compress(data) if compress else data)
    return path


@pytest.mark.parametrize("compress", [True, False])
def test_a_weight_file_that_would_run_code_is_refused_without_running_it(tmp_path, compress):
    marker = tmp_path / "ran"
    path = crafted(tmp_path, [np.zeros(3, np.float32), Payload(marker)], compress)
    with pytest.raises(WeightsError, match="posix.system|os.system|refused"):
        read_arrays(path)
    assert not marker.exists()


@pytest.mark.parametrize("content", [
    {"not": "a list"},
    [np.zeros(2, np.float32), "a string"],
    [np.array([object()], dtype=object)],
    [np.zeros(2, np.float32), [np.zeros(2, np.float32)]],
], ids=["dict", "string", "object-array", "nested-list"])
def test_a_weight_file_holding_anything_but_a_list_of_numeric_arrays_is_refused(tmp_path, content):
    with pytest.raises(WeightsError):
        read_arrays(crafted(tmp_path, content, compress=True))


def test_a_damaged_weight_file_is_refused(tmp_path):
    data = lz4.frame.decompress(mtcnn_model.weights_file("pnet").read_bytes())
    for cut in (10, len(data) // 2, len(data) - 3):
        path = tmp_path / f"cut{cut}"
        path.write_bytes(data[:cut])
        with pytest.raises(WeightsError):
            read_arrays(path)
    (tmp_path / "junk.lz4").write_bytes(joblib_arrays.LZ4_MAGIC + b"\x00" * 40)
    with pytest.raises(WeightsError):
        read_arrays(tmp_path / "junk.lz4")


def test_an_array_larger_than_its_file_is_refused(tmp_path):
    data = lz4.frame.decompress(mtcnn_model.weights_file("rnet").read_bytes())
    stream = io.BytesIO(data)
    path = tmp_path / "short.lz4"
    path.write_bytes(lz4.frame.compress(stream.read(len(data) - 1000)))
    with pytest.raises(WeightsError, match="ended"):
        read_arrays(path)


# --- the conversion ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sessions() -> dict[str, ort.InferenceSession]:
    return {name: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            for name, path in mtcnn_model.cached_models().items()}


@pytest.fixture(scope="module")
def hopper() -> np.ndarray:
    return images.to_rgb(images.read_image(REPO_PROBES / "grace_hopper.jpg"))


def test_the_networks_give_the_packages_own_outputs(sessions, hopper):
    """Reference outputs of mtcnn 1.0.0's Keras networks (TensorFlow 2.21 on the CPU) on fixed inputs."""
    face = hopper[76:236, 109:234]
    as_input = lambda picture, size: cv2.resize(picture, size, interpolation=cv2.INTER_AREA)[None].astype(np.float32)
    boxes, scores = sessions["pnet"].run(None, {"image": as_input(hopper, (72, 84))})
    assert boxes.shape == (1, 4, 37, 31) and scores.shape == (1, 37, 31)
    assert np.unravel_index(scores[0].argmax(), scores[0].shape) == (23, 14)
    assert scores.max() == pytest.approx(0.9606977, abs=1e-5)
    assert (scores > 0.6).sum() == 23
    assert boxes[0, :, 23, 14] == pytest.approx([0.056893, -0.235765, 0.016461, -0.151742], abs=1e-5)
    boxes, scores = sessions["rnet"].run(None, {"image": as_input(face, (24, 24))})
    assert scores == pytest.approx([0.999866], abs=1e-5)
    assert boxes[0] == pytest.approx([0.008461, -0.078115, -0.065936, -0.025016], abs=1e-5)
    boxes, points, scores = sessions["onet"].run(None, {"image": as_input(face, (48, 48))})
    assert scores == pytest.approx([0.999937], abs=1e-5)
    assert boxes[0] == pytest.approx([0.015596, -0.024374, -0.032328, 0.017962], abs=1e-5)
    assert points[0] == pytest.approx([0.289391, 0.742945, 0.510224, 0.280484, 0.697915,
                                       0.349036, 0.36733, 0.563434, 0.733614, 0.750237], abs=1e-5)


def test_p_net_takes_any_size_and_r_net_and_o_net_any_batch(sessions):
    for height, width in [(12, 12), (13, 40), (301, 17)]:
        boxes, scores = sessions["pnet"].run(None, {"image": np.zeros((1, height, width, 3), np.float32)})
        assert scores.shape == (1, math.ceil((height - 2) / 2) - 4, math.ceil((width - 2) / 2) - 4) and boxes.shape[1] == 4
    for batch in (1, 7):
        assert [o.shape for o in sessions["rnet"].run(None, {"image": np.zeros((batch, 24, 24, 3), np.float32)})] \
            == [(batch, 4), (batch,)]
        assert [o.shape for o in sessions["onet"].run(None, {"image": np.zeros((batch, 48, 48, 3), np.float32)})] \
            == [(batch, 4), (batch, 10), (batch,)]


def test_the_models_are_converted_once_and_again_for_new_weights_or_converter(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    first = mtcnn_model.cached_models()
    stamps = {name: path.stat().st_mtime_ns for name, path in first.items()}
    assert mtcnn_model.cached_models() == first
    assert {name: path.stat().st_mtime_ns for name, path in first.items()} == stamps  # not rewritten
    monkeypatch.setattr(mtcnn_model, "CONVERTER_VERSION", "test")
    assert set(mtcnn_model.cached_models().values()).isdisjoint(first.values())


# --- the detector ------------------------------------------------------------------------------------


def labelled(folder: Path) -> list[tuple[Path, list[tuple[int, int, int, int]]]]:
    """dlib's detection test set: each photo and its hand-labelled boxes as (top, right, bottom, left)."""
    found = []
    for xml in ("testing.xml", "training.xml"):
        for image in ElementTree.parse(folder / xml).getroot().iter("image"):
            boxes = [(int(b.get("top")), int(b.get("left")) + int(b.get("width")),
                      int(b.get("top")) + int(b.get("height")), int(b.get("left"))) for b in image.iter("box")]
            found.append((folder / image.get("file"), boxes))
    return found


def test_on_real_group_photos_mtcnn_finds_at_least_95_percent_with_at_most_1_percent_false_boxes(shared_detect):
    labels = found = returned = 0
    for path, truth in labelled(shared_detect):
        boxes = [d.box for d in detection.detect_faces(images.read_image(path), MTCNN)]
        matched = {max(range(len(boxes)), key=lambda i: iou(box, boxes[i]))
                   for box in truth if boxes and max(iou(box, b) for b in boxes) >= 0.5}
        labels, found, returned = labels + len(truth), found + len(matched), returned + len(boxes)
    assert labels == 43
    assert found >= 0.95 * labels
    assert returned - found <= 0.01 * returned


def test_landmarks_are_the_eyes_nose_and_mouth_corners_in_image_pixels(hopper):
    [face] = detection.detect_faces(images.to_bgr(hopper), MTCNN)
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks
    top, right, bottom, left = face.box
    assert left < lx < nx < rx < right and left < mlx < mrx < right  # left to right as seen
    assert top < max(ly, ry) < ny < min(mly, mry) < bottom  # eyes above the nose above the mouth
    [double] = detection.detect_faces(cv2.resize(images.to_bgr(hopper), None, fx=2, fy=2), MTCNN)
    assert np.array(double.landmarks) == pytest.approx(2 * np.array(face.landmarks), abs=0.05 * (right - left))
    assert 0.99 < face.score <= 1


def test_the_box_handed_to_the_encoder_is_closer_to_hogs_than_mtcnns_own(shared_faces):
    """Where both detectors find a face, its encoding from the mapped box is near the HOG route's."""
    mapped, raw = [], []
    for path in sorted((shared_faces / "test").glob("*.jpg")) + sorted((shared_faces / "known").rglob("*.jp*g")):
        bgr = images.read_image(path)
        rgb = images.to_rgb(bgr)
        found = mtcnn.raw_detect(rgb, MTCNN)
        for box in (d.box for d in detection.detect_faces(bgr, HOG)):
            top, right, bottom, left = box
            inside = [i for i, b in enumerate(found.boxes)
                      if b[0] <= (left + right) / 2 <= b[2] and b[1] <= (top + bottom) / 2 <= b[3]]
            if len(inside) != 1:
                continue
            i = inside[0]
            ours = [clipped(mtcnn.dlib_box(found.boxes[i], found.landmarks[i]), *rgb.shape[:2]),
                    clipped(mtcnn.box_as_is(found.boxes[i]), *rgb.shape[:2])]
            a, b, hog = encoding.encode_faces(rgb, [*ours, box], MTCNN)
            mapped.append(np.linalg.norm(a - hog))
            raw.append(np.linalg.norm(b - hog))
    assert len(mapped) >= 15
    assert np.median(mapped) < 0.07 and np.median(mapped) < np.median(raw)


def test_nothing_is_found_in_a_blank_or_tiny_picture():
    assert detection.detect_faces(np.zeros((200, 300, 3), np.uint8), MTCNN) == []
    assert detection.detect_faces(np.full((8, 8, 3), 128, np.uint8), MTCNN) == []
    assert detection.detect_faces(np.zeros((40, 40), np.uint8), MTCNN) == []  # grey


def test_the_pyramid_starts_where_the_smallest_face_fills_p_nets_window_and_ends_before_the_picture_does():
    levels = mtcnn.scales(360, 640, 24)
    assert levels[0] == pytest.approx(12 / 24)
    assert np.allclose(np.diff(np.log(levels)), np.log(mtcnn.PYRAMID_FACTOR))
    assert 360 * levels[-1] >= 12 > 360 * levels[-1] * mtcnn.PYRAMID_FACTOR
    assert mtcnn.scales(10, 10, 20) == []
