"""dlib's face recognition network on ONNX Runtime gives dlib's own encodings (issue 11).

Every face of the shared photos and of the repo's samples is cut as dlib cuts it and
encoded both by dlib (compute_face_descriptor on the chip) and by ONNX Runtime.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

import cv2  # noqa: E402
import dlib  # noqa: E402

from facewire.faces import dlib_dat, encoding, model_files, onnx_encoder, onnx_model  # noqa: E402
from facewire.faces.detection import detect_faces  # noqa: E402
from facewire.faces.settings import DetectorSettings  # noqa: E402
from facewire.process import ROOT  # noqa: E402

SHARED_FACES = (ROOT.parent / "shared" / "data" / "faces").resolve()
TOLERANCE = 1e-4


def _shared_pictures() -> list[Path]:
    if not SHARED_FACES.is_dir():
        return []
    return sorted([*SHARED_FACES.glob("known/*/*"), *SHARED_FACES.glob("test/*"),
                   *SHARED_FACES.glob("video/*.png")])


def _repo_pictures() -> list[Path]:
    return sorted([*(ROOT / "test_images").glob("*.jpg"), *(ROOT / "known_faces").glob("*.jpg")])


def _chips(paths: list[Path]) -> tuple[np.ndarray, list[str]]:
    """Every face facewire finds in `paths`, cut as dlib's compute_face_descriptor cuts it."""
    landmarks = encoding.landmarks_5()
    chips, names = [], []
    for path in paths:
        if path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        bgr = cv2.imread(str(path))
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        boxes = [detection.box for detection in detect_faces(bgr, DetectorSettings())]
        shapes = [landmarks(rgb, dlib.rectangle(left, top, right, bottom))
                  for top, right, bottom, left in boxes]
        for i, chip in enumerate(onnx_encoder.face_chips(rgb, shapes)):
            chips.append(chip)
            names.append(f"{path.relative_to(path.parents[1])}#{i}")
    return np.array(chips, dtype=np.uint8).reshape(-1, 150, 150, 3), names


@pytest.fixture(scope="module")
def dlib_encoder() -> dlib.face_recognition_model_v1:
    return dlib.face_recognition_model_v1(str(model_files.default_dat()))


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return onnx_model.convert(model_files.default_dat(), tmp_path_factory.mktemp("onnx") / "face.onnx")


@pytest.fixture(scope="module")
def encoder(model_path) -> onnx_encoder.OnnxFaceEncoder:
    return onnx_encoder.OnnxFaceEncoder(model_path)


def _dlib_encodings(dlib_encoder, chips: np.ndarray) -> np.ndarray:
    return np.array([dlib_encoder.compute_face_descriptor(chip) for chip in chips]).reshape(-1, 128)


def _worst(encoder, dlib_encoder, chips: np.ndarray) -> tuple[float, int]:
    diff = np.abs(encoder.encode(chips) - _dlib_encodings(dlib_encoder, chips)).max(axis=1)
    return float(diff.max()), int(diff.argmax())


def test_repo_faces_match_dlib(encoder, dlib_encoder):
    chips, names = _chips(_repo_pictures())
    assert len(chips) >= 4, names
    worst, at = _worst(encoder, dlib_encoder, chips)
    print(f"repo samples: {len(chips)} faces, worst max-abs difference {worst:.2e} ({names[at]})")
    assert worst <= TOLERANCE, names[at]


def test_shared_faces_match_dlib(encoder, dlib_encoder):
    pictures = _shared_pictures()
    if not pictures:
        pytest.skip(f"shared photos not found at {SHARED_FACES}")
    chips, names = _chips(pictures)
    assert len(chips) >= 20, names
    worst, at = _worst(encoder, dlib_encoder, chips)
    print(f"shared photos: {len(chips)} faces, worst max-abs difference {worst:.2e} ({names[at]})")
    assert worst <= TOLERANCE, names[at]


@pytest.mark.parametrize("level", ["ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED"])
def test_every_optimisation_level_matches_dlib(model_path, dlib_encoder, level):
    """The default (ORT_ENABLE_ALL) is checked above; the others fuse less or not at all."""
    options = onnx_encoder.session_options(1, getattr(ort.GraphOptimizationLevel, level))
    chips, names = _chips(_repo_pictures())
    worst, at = _worst(onnx_encoder.OnnxFaceEncoder(model_path, options=options), dlib_encoder, chips)
    assert worst <= TOLERANCE, names[at]


def test_batches_give_the_same_encodings(encoder):
    chips, _ = _chips(_repo_pictures())
    one_by_one = np.concatenate([encoder.encode(chip[np.newaxis]) for chip in chips])
    assert encoder.encode(chips).shape == (len(chips), 128)
    np.testing.assert_allclose(encoder.encode(chips), one_by_one, atol=1e-6)
    assert encoder.encode(chips[:0]).shape == (0, 128)


def test_one_perturbed_layer_breaks_parity(dlib_encoder):
    """The parity check is sharp enough to see a 1e-2 change in one conv's weights."""
    net = dlib_dat.load(model_files.default_dat())
    convs = [i for i, layer in enumerate(net.layers) if isinstance(layer, dlib_dat.Conv)]
    index = convs[len(convs) // 2]
    layers = list(net.layers)
    layers[index] = dataclasses.replace(layers[index], weights=layers[index].weights + np.float32(1e-2))
    model = onnx_model.build_onnx(dataclasses.replace(net, layers=layers))
    session = ort.InferenceSession(model.SerializeToString(), onnx_encoder.session_options(),
                                   providers=["CPUExecutionProvider"])
    chips, _ = _chips(_repo_pictures())
    (perturbed,) = session.run(None, {model_files.INPUT_NAME: chips})
    assert np.abs(perturbed - _dlib_encodings(dlib_encoder, chips)).max() > TOLERANCE


def test_cache_is_rebuilt_when_the_source_changes(tmp_path):
    dat = tmp_path / "model.dat"
    shutil.copyfile(model_files.default_dat(), dat)
    out = tmp_path / "cache" / "model.onnx"
    assert model_files.cached_model(dat, out) == out
    first = out.stat().st_mtime_ns
    assert onnx_model.model_props(out)[onnx_model.SOURCE_SHA256_KEY] == onnx_model.sha256_file(dat)
    model_files.cached_model(dat, out)
    assert out.stat().st_mtime_ns == first, "an up-to-date cache was rebuilt"

    data = bytearray(dat.read_bytes())
    assert data[4:17] == b"loss_metric_2"
    data[19] ^= 1  # a low bit of the loss margin's mantissa: still a valid file, another hash
    dat.write_bytes(bytes(data))
    model_files.cached_model(dat, out)
    assert onnx_model.model_props(out)[onnx_model.SOURCE_SHA256_KEY] == onnx_model.sha256_file(dat)
    assert not list(out.parent.glob("*.tmp")), "a temporary file was left behind"


def test_damaged_cache_is_rebuilt(tmp_path):
    out = tmp_path / "model.onnx"
    out.write_bytes(b"not a model")
    assert not onnx_model.is_current(out, model_files.default_dat())
    model_files.cached_model(None, out)
    assert onnx_model.is_current(out, model_files.default_dat())


def test_cache_lives_under_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert model_files.default_onnx_path().parent == tmp_path / "facewire"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert model_files.cache_dir() == Path.home() / ".cache" / "facewire"


@pytest.mark.parametrize("damage", ["truncated", "empty", "jpeg", "landmarks", "detector"])
def test_foreign_or_truncated_dat_gives_a_clear_error(tmp_path, damage):
    source = model_files.default_dat()
    data = {
        "truncated": lambda: source.read_bytes()[: source.stat().st_size // 2],
        "empty": lambda: b"",
        "jpeg": lambda: (ROOT / "test_images" / "grace_hopper.jpg").read_bytes(),
        "landmarks": lambda: Path(model_files.model_file(model_files.LANDMARKS_5)).read_bytes(),
        "detector": lambda: Path(model_files.model_file(model_files.CNN_DETECTOR)).read_bytes(),
    }[damage]()
    dat = tmp_path / "model.dat"
    dat.write_bytes(data)
    with pytest.raises(dlib_dat.DatFormatError, match="model.dat"):
        onnx_model.convert(dat, tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


def test_detector_file_parses_as_its_own_architecture():
    net = dlib_dat.load(model_files.model_file(model_files.CNN_DETECTOR), dlib_dat.MMOD_FACE_DETECTOR_NET)
    assert net.loss.kind == "loss_mmod" and net.input.kind == "input_rgb_image_pyramid"
    assert [type(layer).__name__ for layer in net.layers].count("Conv") == 7
