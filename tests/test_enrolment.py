"""Enrolment that protects the gallery: a face too small, blurred, turned or tilted, or nearer another person's
photos than its own name's, is refused naming the reason (unless --allow-poor-photos), and the folder sync
reports such a photo by name instead of enrolling it; every shared gallery photo passes."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from facewire.client.client import Client, ServerError
from facewire.config import Config
from facewire.faces import images
from facewire.faces.boxes import box_area
from facewire.faces.enrolment import enrolment_problem, likeness_problem, photo_problem, quality_problem
from facewire.faces.index import FaceIndex
from facewire.faces.quality import Quality
from facewire.faces.recognize import Face, find_faces
from facewire.faces.settings import DetectorSettings
from facewire.process import ServerProcess
from facewire.serve.cli import configuration, parse_args
from facewire.serve.service import Service
from facewire.serve.worker import photo_checks
from facewire.store.live import GalleryStore, prepare
from facewire.wire import protocol

from .conftest import REPO_KNOWN
from .poor_photos import png, poor_photos

SETTINGS = DetectorSettings()
CHECKED = photo_checks(Config())
LOOK_ALIKE = r"the face is nearer obama's photos \(0\.\d\d\) than biden's own \(0\.\d\d\)"
"""Obama's second photo enrolled as biden, in a gallery of both."""


def largest_face(image: np.ndarray) -> Face:
    return max(find_faces(image, SETTINGS), key=lambda face: box_area(face.box))


def gallery_photos(shared: Path) -> list[tuple[str, Path]]:
    """(name, path) of every photo of the shared gallery, the repo's known_faces/ and the video portraits."""
    return ([(path.parent.name, path) for path in sorted((shared / "known").glob("*/*.jp*g"))]
            + [(path.stem, path) for path in sorted(REPO_KNOWN.glob("*.jpg"))]
            + [(path.stem.replace("-", "_"), path) for path in sorted((shared / "video").glob("*.png"))])


def index_of(faces: list[tuple[str, np.ndarray]]) -> FaceIndex:
    return FaceIndex.build(np.arange(len(faces)), [name for name, _ in faces], np.array([v for _, v in faces]))


@pytest.fixture(scope="module")
def poor(shared_faces) -> dict[str, tuple[np.ndarray, str]]:
    return poor_photos(shared_faces)


def test_a_face_at_each_limit_passes_and_one_beyond_is_refused_naming_the_reason():
    assert quality_problem(Quality(60, 100.0, 50.0, -40.0)) is None
    assert quality_problem(Quality(59, 100.0, 0.0, 0.0)) == "the face is 59 px wide; at least 60 px is needed"
    assert quality_problem(Quality(60, 99.9, 0.0, 0.0)) == "the face is blurred (sharpness 99.9; at least 100)"
    assert quality_problem(Quality(60, 100.0, -50.5, 0.0)) == "the face is turned 50.5 degrees; at most 50"
    assert quality_problem(Quality(60, 100.0, 0.0, 40.5)) == "the face is tilted 40.5 degrees; at most 40"
    assert quality_problem(Quality(60, 100.0)) is None  # no landmarks (dlib's detectors): no pose to judge


def test_every_shared_gallery_photo_passes_alone_and_against_the_others(shared_faces):
    photos = gallery_photos(shared_faces)
    assert len(photos) == 12
    faces = [(name, largest_face(images.read_image(path))) for name, path in photos]
    for i, (name, path) in enumerate(photos):
        others = index_of([(other, face.encoding) for j, (other, face) in enumerate(faces) if j != i])
        image = images.read_image(path)
        assert photo_problem(image, faces[i][1]) is None, path
        assert enrolment_problem(image, faces[i][1], name, others) is None, path


def test_poor_photos_show_one_face_and_are_refused_for_their_reason(poor):
    for kind, (photo, reason) in poor.items():
        [face] = find_faces(photo, SETTINGS)
        assert re.fullmatch(reason, photo_problem(photo, face) or ""), kind


def test_a_look_alike_is_refused_only_when_the_gallery_has_its_name_and_someone_else(shared_faces):
    known = shared_faces / "known"
    obama, biden = (largest_face(images.read_image(known / p)).encoding for p in ("obama/obama.jpg", "biden/biden.jpg"))
    probe = largest_face(images.read_image(known / "obama" / "obama2.jpg")).encoding
    both = index_of([("obama", obama), ("biden", biden)])
    assert re.fullmatch(LOOK_ALIKE, likeness_problem("biden", probe, both) or "")
    assert likeness_problem("obama", probe, both) is None
    assert likeness_problem("newcomer", probe, both) is None  # no photo of the name yet
    assert likeness_problem("biden", probe, index_of([("biden", biden)])) is None  # nobody else
    assert likeness_problem("biden", probe, index_of([("biden", biden), ("biden", biden + 0.01)])) is None


@pytest.fixture
def two_people(shared_faces, tmp_path) -> Path:
    """A gallery folder of obama and biden, one photo each (copied: enrolments write into it)."""
    folder = tmp_path / "known"
    for person, photo in (("obama", "obama.jpg"), ("biden", "biden.jpg")):
        (folder / person).mkdir(parents=True)
        shutil.copy(shared_faces / "known" / person / photo, folder / person / photo)
    return folder


def enrol(service: Service, name: str, image: np.ndarray) -> dict:
    body, _ = protocol.unpack_reply(service.handle(protocol.pack_request("enroll", image, name=name)))
    return body


def test_the_enroll_op_refuses_poor_photos_and_look_alikes_naming_the_reason(two_people, poor, shared_faces):
    store = GalleryStore.prepared(f"sqlite:///{two_people.parent / 'gallery.db'}", two_people, SETTINGS, CHECKED)
    service = Service(store)
    look_alike = images.read_image(shared_faces / "known" / "obama" / "obama2.jpg")
    for name, photo, reason in [("someone", photo, reason) for photo, reason in poor.values()] + [
            ("biden", look_alike, LOOK_ALIKE)]:
        body = enrol(service, name, photo)
        assert body["ok"] is False and body["error"]["code"] == "bad_photo", body
        assert re.fullmatch(reason, body["error"]["message"]), body
    assert store.people() == {"biden": 1, "obama": 1}
    assert sorted(p.name for p in two_people.rglob("*") if p.is_file()) == ["biden.jpg", "obama.jpg"]
    assert enrol(service, "obama", look_alike)["photos"] == 2  # under its own name


def test_allow_poor_photos_takes_them_all(two_people, poor, shared_faces):
    config = configuration(parse_args(["--known-faces", str(two_people), "--allow-poor-photos"]))
    assert config.allow_poor_photos and Config.from_json(config.to_json()) == config
    assert photo_checks(config) is None
    store = GalleryStore.prepared(f"sqlite:///{two_people.parent / 'gallery.db'}", two_people, SETTINGS,
                                  photo_checks(config))
    service = Service(store)
    for kind, (photo, _) in poor.items():
        assert enrol(service, kind, photo)["photos"] == 1, kind
    assert enrol(service, "biden", images.read_image(shared_faces / "known" / "obama" / "obama2.jpg"))["photos"] == 2


def test_the_folder_sync_reports_a_poor_photo_by_name_and_takes_it_once_replaced(two_people, poor, shared_faces,
                                                                                   caplog):
    database = f"sqlite:///{two_people.parent / 'gallery.db'}"
    blurred = two_people / "obama" / "blurred.png"
    blurred.write_bytes(png(poor["blurred"][0]))
    with caplog.at_level(logging.WARNING, logger="facewire.store.sync"):
        first = prepare(database, two_people, SETTINGS, CHECKED).sync
    assert (first.added, first.refused, first.skipped) == (2, 1, 0)
    assert re.search(rf"{re.escape(str(blurred))} refused: {poor['blurred'][1]}", caplog.text), caplog.text
    store = GalleryStore.open(database, two_people, SETTINGS, CHECKED)
    assert store.people() == {"biden": 1, "obama": 1}
    again = prepare(database, two_people, SETTINGS, CHECKED).sync  # still there: read, and refused, again
    assert (again.unchanged, again.hashed, again.added, again.refused) == (2, 1, 0, 1)
    blurred.write_bytes(png(images.read_image(shared_faces / "known" / "obama" / "obama2.jpg")))
    store.reload()
    assert store.people() == {"biden": 1, "obama": 2}


def test_a_server_reports_refused_folder_photos_and_refuses_poor_enrolments(two_people, poor, tmp_path):
    blurred = two_people / "obama" / "blurred.png"
    blurred.write_bytes(png(poor["blurred"][0]))
    with ServerProcess(two_people, tmp_path / "server.log", "--workers", "1") as server:
        log = server.log()
        assert f"gallery photo {blurred} refused: the face is blurred" in log, log
        assert "3 files (0 unchanged, 2 added, 0 removed, 0 skipped, 1 refused)" in log, log
        assert "1 gallery photos refused as too poor (named above); --allow-poor-photos takes them" in log, log
        with Client(server.address, timeout=60) as client:
            assert client.gallery_op("list")["people"] == {"biden": 1, "obama": 1}
            with pytest.raises(ServerError) as refused:
                client.enroll("someone", poor["small"][0])
            assert refused.value.code == "bad_photo" and re.search(poor["small"][1], str(refused.value))
