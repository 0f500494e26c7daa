"""Where the models come from, and the cache that makes a start fast: dlib's HOG detector saved once,
and a converted ONNX model checked against its .dat only when either file changed."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from unittest import mock

import dlib
import pytest

from facewire.faces import hog, model_files, onnx_model
from facewire.faces.images import read_image

from .conftest import REPO_PROBES, SHARED_FACES

with warnings.catch_warnings():  # face_recognition_models imports the deprecated pkg_resources
    warnings.simplefilter("ignore", UserWarning)
    import face_recognition_models


@pytest.mark.parametrize("name, location", [
    (model_files.RESNET, face_recognition_models.face_recognition_model_location),
    (model_files.LANDMARKS_5, face_recognition_models.pose_predictor_five_point_model_location),
    (model_files.CNN_DETECTOR, face_recognition_models.cnn_face_detector_model_location),
])
def test_model_files_are_those_face_recognition_models_names(name, location):
    assert model_files.model_file(name) == Path(location()) and model_files.model_file(name).is_file()


@pytest.fixture
def empty_cache(monkeypatch, tmp_path):
    """An empty $XDG_CACHE_HOME, and hog_detector forgotten before and after (other tests get the real one)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    hog.hog_detector.cache_clear()
    yield tmp_path / "facewire"
    hog.hog_detector.cache_clear()


def saved_detector(tmp_path: Path) -> Path:
    return tmp_path / "facewire" / f"frontal_face_detector-dlib-{dlib.__version__}.svm"


def test_the_cached_hog_detector_finds_what_dlibs_own_finds(empty_cache, tmp_path):
    built = hog.hog_detector()
    saved = saved_detector(tmp_path)
    assert saved.is_file() and not list(saved.parent.glob("*.tmp"))
    hog.hog_detector.cache_clear()
    with mock.patch.object(dlib, "get_frontal_face_detector", side_effect=AssertionError("built again")):
        loaded = hog.hog_detector()  # from the file: dlib's own detector is not built again
    own = dlib.get_frontal_face_detector()
    pictures = sorted((SHARED_FACES / "test").glob("*.jpg")) + sorted(REPO_PROBES.glob("*.jpg"))
    found = 0
    for path in pictures:
        image = read_image(path)
        expected = own.run(image, 1, -0.3)
        found += len(expected[0])
        for detector in (built, loaded):
            boxes, scores, kinds = detector.run(image, 1, -0.3)
            assert [str(box) for box in boxes] == [str(box) for box in expected[0]], path.name
            assert scores == expected[1] and kinds == expected[2], path.name
    assert found > len(pictures)


def test_a_damaged_saved_detector_is_built_and_saved_again(empty_cache, tmp_path):
    saved = saved_detector(tmp_path)
    saved.parent.mkdir(parents=True)
    saved.write_bytes(b"\x01\x02 not a detector")
    detector = hog.hog_detector()
    own = tmp_path / "own.svm"
    dlib.get_frontal_face_detector().save(str(own))
    assert saved.read_bytes() == own.read_bytes()
    assert len(detector(read_image(REPO_PROBES / "grace_hopper.jpg"))) == 1


def test_a_cache_that_cannot_be_written_still_gives_the_detector(monkeypatch, empty_cache, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert len(hog.hog_detector()(read_image(REPO_PROBES / "grace_hopper.jpg"))) == 1


@pytest.fixture
def converted(tmp_path) -> tuple[Path, Path]:
    """A copy of the .dat and its model converted by cached_model (checked once, so stamped)."""
    dat = tmp_path / "model.dat"
    shutil.copyfile(model_files.default_dat(), dat)
    out = tmp_path / "cache" / "model.onnx"
    assert model_files.cached_model(dat, out) == out
    return dat, out


def checks(dat: Path, out: Path) -> int:
    """How many times cached_model checked the model against its .dat (hashing both) this time."""
    with mock.patch.object(onnx_model, "is_current", wraps=onnx_model.is_current) as is_current:
        assert model_files.cached_model(dat, out) == out
    return is_current.call_count


def test_a_checked_model_is_not_checked_again_while_neither_file_changes(converted):
    dat, out = converted
    assert checks(dat, out) == 0
    assert checks(dat, out) == 0


def test_a_rewritten_dat_is_checked_again_even_with_its_old_mtime(converted):
    dat, out = converted
    before = dat.stat()
    data = bytearray(dat.read_bytes())
    data[19] ^= 1  # still a valid file (see test_onnx), another hash
    dat.write_bytes(bytes(data))
    os.utime(dat, ns=(before.st_atime_ns, before.st_mtime_ns))  # as cp -p or rsync -t would leave it
    assert checks(dat, out) == 1
    assert onnx_model.model_props(out)[onnx_model.SOURCE_SHA256_KEY] == onnx_model.sha256_file(dat)
    assert checks(dat, out) == 0


def test_a_replaced_model_or_a_damaged_stamp_is_checked_again(converted):
    dat, out = converted
    out.write_bytes(b"not a model")
    assert checks(dat, out) == 1
    assert onnx_model.is_current(out, dat)
    stamp = out.with_name(out.name + ".checked")
    stamp.write_text("{")
    assert checks(dat, out) == 1
    assert checks(dat, out) == 0
    assert not list(out.parent.glob("*.tmp"))
