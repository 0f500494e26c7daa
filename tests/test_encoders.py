"""The two encoders through the real server: dlib's network in dlib and on ONNX Runtime give the
same names, and the same distances to 3 decimals, on every face of the shared and sample photos."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facewire.process import ServerProcess

from .conftest import REPO_KNOWN, REPO_PROBES, SHARED_FACES, everyone_gallery, run_client
from .peers import wait_until


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Path:
    """The repo's known_faces/ plus, when present, the shared people (linked, never copied)."""
    return everyone_gallery(tmp_path_factory.mktemp("encoders") / "known")


def faces_by(encoder: str, gallery: Path, tmp_path: Path) -> dict[str, list[tuple[str, float | None, list[int]]]]:
    """Every photo's faces (name, distance, box) as the server with `encoder` names them."""
    photos = [*sorted(REPO_PROBES.glob("*.jpg")), *sorted((SHARED_FACES / "test").glob("*.jpg"))]
    with ServerProcess(gallery, tmp_path / f"{encoder}.log", "--workers", "1", "--encoder", encoder,
                       "--db", f"sqlite:///{tmp_path / f'{encoder}.db'}") as server:
        done = run_client("--server", server.address, "--json", "--no-show", *map(str, photos))
        log = server.log()
    assert done.returncode == 0, done.stderr
    assert ("ONNX Runtime" in log) == (encoder == "onnx"), log  # the server says which encoder runs
    return {Path(line["image"]).name: [(f["name"], f["distance"], f["box"]) for f in line["faces"]]
            for line in map(json.loads, done.stdout.splitlines())}


def test_onnx_and_dlib_give_the_same_names_and_distances(gallery, tmp_path):
    onnx, dlib = faces_by("onnx", gallery, tmp_path), faces_by("dlib", gallery, tmp_path)
    assert onnx.keys() == dlib.keys()
    faces = 0
    for photo in dlib:
        assert [(name, box) for name, _, box in onnx[photo]] == [(name, box) for name, _, box in dlib[photo]], photo
        for (_, near, _), (_, far, _) in zip(onnx[photo], dlib[photo]):
            assert near is not None and round(near, 3) == round(far, 3), (photo, near, far)
            faces += 1
    assert faces >= (15 if SHARED_FACES.is_dir() else 3)


@pytest.mark.parametrize("encoder, says", [("onnx", "dlib's network on ONNX Runtime (CPUExecutionProvider)"),
                                           ("dlib", "dlib's face_recognition_model_v1")])
def test_each_worker_logs_the_encoder_it_runs(encoder, says, tmp_path):
    with ServerProcess(REPO_KNOWN, tmp_path / "server.log", "--workers", "2", "--encoder", encoder,
                       "--db", f"sqlite:///{tmp_path / 'cache.db'}") as server:
        def serving() -> list[str]:
            return [line for line in server.log().splitlines() if " serving " in line]

        assert wait_until(lambda: len(serving()) == 2, 60), server.log()
        serving = serving()
    assert len(serving) == 2 and all(line.endswith(f"encoding with {says}") for line in serving), serving
