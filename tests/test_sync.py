"""The folder sync on SQLite and PostgreSQL: what it reads, encodes, adds and removes, and what it never touches."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from facewire.faces import images
from facewire.faces.boxes import box_area
from facewire.faces.recognize import find_faces
from facewire.faces.settings import DetectorSettings
from facewire.store import sync
from facewire.store.database import NewPhoto, open_database
from facewire.store.live import photo_encoder
from facewire.store.names import BadPhoto
from facewire.store.sync import folder_origin, sync_folder

from .conftest import SHARED_FACES

pytest_plugins = ("tests.postgres",)

ENCODER = "fake"
HOST = "testhost"


def fake_vector(data: bytes) -> np.ndarray:
    """A vector derived from the bytes' hash: equal bytes, equal vectors."""
    return np.frombuffer(hashlib.sha512(data).digest() * 2, dtype=np.uint8)[:128].astype(np.float32)


class Reads:
    """Counts what the sync reads (files) and encodes (bytes), through its one read and the encoder."""

    def __init__(self, monkeypatch):
        self.read: list[str] = []
        self.encoded: list[bytes] = []
        original = sync.read_photo
        monkeypatch.setattr(sync, "read_photo", lambda path: self.read.append(path.name) or original(path))

    def encode(self, data: bytes):
        """b"noface..." shows no face, b"broken..." is not an image, b"blurred..." a face too poor, anything
        else one face."""
        self.encoded.append(data)
        if data.startswith(b"broken"):
            raise images.ImageError("not a readable image")
        if data.startswith(b"blurred"):
            raise BadPhoto("the face is blurred (sharpness 12.0; at least 100)")
        return (0, None) if data.startswith(b"noface") else (1, fake_vector(data))

    def reset(self) -> None:
        self.read.clear()
        self.encoded.clear()


@pytest.fixture
def reads(monkeypatch):
    return Reads(monkeypatch)


@pytest.fixture
def db(database_url):
    with open_database(database_url) as database:
        yield database


@pytest.fixture
def folder(tmp_path) -> Path:
    """Both layouts, plus a hidden file, a hidden folder and a non-image to ignore."""
    root = tmp_path / "known"
    (root / "bob").mkdir(parents=True)
    (root / ".trash").mkdir()
    (root / "ann.jpg").write_bytes(b"ann photo")
    (root / "bob" / "1.jpg").write_bytes(b"bob one")
    (root / "bob" / "2.PNG").write_bytes(b"bob two")
    (root / ".hidden.jpg").write_bytes(b"hidden")
    (root / ".trash" / "x.jpg").write_bytes(b"trash")
    (root / "notes.txt").write_text("not a photo")
    return root


def run(db, folder: Path, reads: Reads, host: str = HOST):
    return sync_folder(db, folder, reads.encode, ENCODER, host=host)


def log_rows(db) -> list[tuple]:
    with db.transaction() as tx:
        return tx.all("SELECT op, person FROM changes ORDER BY seq")


def counts(stats) -> tuple:
    return (stats.seen, stats.unchanged, stats.hashed, stats.encoded, stats.added, stats.removed, stats.skipped)


def test_the_first_sync_adds_both_layouts_and_skips_hidden_entries(db, folder, reads):
    stats = run(db, folder, reads)
    assert counts(stats) == (3, 0, 3, 3, 3, 0, 0) and stats.seconds > 0
    assert sorted(reads.read) == ["1.jpg", "2.PNG", "ann.jpg"]
    assert db.people() == {"ann": 1, "bob": 2}
    origin = folder_origin(folder, HOST)
    assert origin == f"folder:{HOST}:{folder.resolve()}"
    assert sorted(db.folder_files(origin)) == ["ann.jpg", "bob/1.jpg", "bob/2.PNG"]
    assert db.first_photo("ann") == b"ann photo"
    snap = db.snapshot(ENCODER)
    assert np.array_equal(snap.vectors[snap.names.index("ann")], fake_vector(b"ann photo"))
    assert log_rows(db) == [("add", "ann"), ("add", "bob"), ("add", "bob")]


def test_an_unchanged_folder_reads_nothing_and_changes_nothing(db, folder, reads):
    run(db, folder, reads)
    reads.reset()
    seq = db.last_seq()
    stats = run(db, folder, reads)
    assert counts(stats) == (3, 3, 0, 0, 0, 0, 0)
    assert reads.read == [] and reads.encoded == [] and db.last_seq() == seq


def test_a_touched_file_is_hashed_but_not_encoded_and_then_left_alone(db, folder, reads):
    run(db, folder, reads)
    reads.reset()
    seq = db.last_seq()
    status = (folder / "ann.jpg").stat()
    os.utime(folder / "ann.jpg", ns=(status.st_atime_ns, status.st_mtime_ns + 5_000_000_000))
    stats = run(db, folder, reads)
    assert counts(stats) == (3, 2, 1, 0, 0, 0, 0)
    assert reads.read == ["ann.jpg"] and reads.encoded == [] and db.last_seq() == seq
    reads.reset()
    assert counts(run(db, folder, reads)) == (3, 3, 0, 0, 0, 0, 0) and reads.read == []


def test_a_changed_file_is_re_encoded_and_replaces_its_photo(db, folder, reads):
    run(db, folder, reads)
    old = db.folder_files(folder_origin(folder, HOST))["bob/1.jpg"].photo_id
    reads.reset()
    (folder / "bob" / "1.jpg").write_bytes(b"bob one, retaken")
    stats = run(db, folder, reads)
    assert counts(stats) == (3, 2, 1, 1, 1, 0, 0)
    assert reads.encoded == [b"bob one, retaken"]
    new = db.folder_files(folder_origin(folder, HOST))["bob/1.jpg"].photo_id
    assert new != old and db.people() == {"ann": 1, "bob": 2}
    snap = db.snapshot(ENCODER)
    assert old not in snap.photo_ids and np.array_equal(snap.vectors[list(snap.photo_ids).index(new)],
                                                        fake_vector(b"bob one, retaken"))
    assert log_rows(db)[-2:] == [("remove", "bob"), ("add", "bob")]


def test_a_same_size_change_with_a_new_mtime_is_seen(db, folder, reads):
    run(db, folder, reads)
    reads.reset()
    path = folder / "bob" / "2.PNG"
    status = path.stat()
    path.write_bytes(b"bob TWO")
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 1))
    assert counts(run(db, folder, reads)) == (3, 2, 1, 1, 1, 0, 0)


def test_a_deleted_file_takes_its_photo_and_person(db, folder, reads):
    run(db, folder, reads)
    (folder / "ann.jpg").unlink()
    (folder / "bob" / "2.PNG").unlink()
    reads.reset()
    stats = run(db, folder, reads)
    assert counts(stats) == (1, 1, 0, 0, 0, 2, 0) and reads.read == []
    assert db.people() == {"bob": 1}
    assert sorted(db.folder_files(folder_origin(folder, HOST))) == ["bob/1.jpg"]
    assert sorted(log_rows(db)[-2:]) == [("remove", "ann"), ("remove", "bob")]


def test_other_origins_are_never_touched(db, folder, reads, tmp_path):
    db.add_photo(NewPhoto("ann", b"enrolled", "s1", "api", ENCODER, 1, fake_vector(b"1")), who="api")
    db.import_vectors([("ann", fake_vector(b"2")), ("zed", fake_vector(b"3"))], who="import", encoder=ENCODER)
    elsewhere = NewPhoto("bob", b"x", "s4", f"folder:otherhost:{folder.resolve()}", ENCODER, 1, fake_vector(b"4"))
    db.add_photo(elsewhere, who="other")
    other_folder = tmp_path / "other"
    other_folder.mkdir()
    (other_folder / "cy.jpg").write_bytes(b"cy")
    run(db, other_folder, reads)
    before = db.people()
    run(db, folder, reads)
    for path in [folder / "ann.jpg", folder / "bob" / "1.jpg", folder / "bob" / "2.PNG"]:
        path.unlink()
    stats = run(db, folder, reads)
    assert stats.removed == 3
    assert db.people() == before == {"ann": 2, "bob": 1, "cy": 1, "zed": 1}


def test_the_same_folder_from_another_host_is_another_origin(db, folder, reads):
    run(db, folder, reads)
    run(db, folder, reads, host="second")
    assert db.people() == {"ann": 2, "bob": 4}
    (folder / "ann.jpg").unlink()
    run(db, folder, reads, host="second")
    assert db.people() == {"ann": 1, "bob": 4}


def test_a_mirror_of_an_api_photo_is_not_added_again_nor_removed_with_its_file(db, folder, reads):
    api = db.add_photo(NewPhoto("bob", b"bob one", hashlib.sha256(b"bob one").hexdigest(), "api", ENCODER, 1,
                                fake_vector(b"bob one")), who="api")
    stats = run(db, folder, reads)
    assert counts(stats) == (3, 0, 3, 2, 2, 0, 0)
    assert reads.encoded.count(b"bob one") == 0
    assert db.people() == {"ann": 1, "bob": 2}
    assert db.folder_files(folder_origin(folder, HOST))["bob/1.jpg"].photo_id == api
    (folder / "bob" / "1.jpg").unlink()
    stats = run(db, folder, reads)
    assert stats.removed == 0 and db.people() == {"ann": 1, "bob": 2}
    assert api in db.snapshot(ENCODER).photo_ids


def test_photos_without_a_face_or_unreadable_are_logged_counted_and_not_read_again(db, folder, reads, caplog):
    (folder / "cy.jpg").write_bytes(b"noface at all")
    (folder / "dee.jpg").write_bytes(b"broken bytes")
    with caplog.at_level(logging.WARNING, logger="facewire.store.sync"):
        stats = run(db, folder, reads)
    assert counts(stats) == (5, 0, 5, 4, 3, 0, 2)
    assert "cy.jpg skipped: no face found" in caplog.text and "dee.jpg skipped: cannot be read" in caplog.text
    assert db.people() == {"ann": 1, "bob": 2}
    reads.reset()
    assert counts(run(db, folder, reads)) == (5, 5, 0, 0, 0, 0, 0) and reads.read == []
    (folder / "cy.jpg").write_bytes(b"a face, now")
    assert counts(run(db, folder, reads)) == (5, 4, 1, 1, 1, 0, 0)
    assert db.people() == {"ann": 1, "bob": 2, "cy": 1}


def test_a_photo_that_loses_its_face_loses_its_row(db, folder, reads):
    run(db, folder, reads)
    (folder / "ann.jpg").write_bytes(b"noface any more")
    stats = run(db, folder, reads)
    assert (stats.added, stats.skipped) == (0, 1)
    assert db.people() == {"bob": 2} and log_rows(db)[-1] == ("remove", "ann")


def test_a_poor_photo_is_reported_and_read_again_until_it_is_replaced(db, folder, reads, caplog):
    (folder / "cy.jpg").write_bytes(b"blurred cy")
    with caplog.at_level(logging.WARNING, logger="facewire.store.sync"):
        stats = run(db, folder, reads)
    assert (stats.seen, stats.hashed, stats.encoded, stats.added, stats.refused, stats.skipped) == (4, 4, 3, 3, 1, 0)
    assert f"{folder / 'cy.jpg'} refused: the face is blurred (sharpness 12.0; at least 100)" in caplog.text
    assert db.people() == {"ann": 1, "bob": 2} and "cy.jpg" not in db.folder_files(folder_origin(folder, HOST))
    reads.reset()
    stats = run(db, folder, reads)
    assert (stats.unchanged, stats.refused) == (3, 1) and reads.read == ["cy.jpg"]
    (folder / "cy.jpg").write_bytes(b"cy, in focus")
    stats = run(db, folder, reads)
    assert (stats.added, stats.refused) == (1, 0) and db.people() == {"ann": 1, "bob": 2, "cy": 1}


def test_a_photo_replaced_by_a_poor_one_loses_its_row(db, folder, reads):
    run(db, folder, reads)
    (folder / "ann.jpg").write_bytes(b"blurred ann")
    stats = run(db, folder, reads)
    assert (stats.added, stats.removed, stats.refused) == (0, 1, 1)
    assert db.people() == {"bob": 2} and log_rows(db)[-1] == ("remove", "ann")
    assert "ann.jpg" not in db.folder_files(folder_origin(folder, HOST))


def test_the_real_encoder_on_real_photos(db, tmp_path):
    known = SHARED_FACES / "known"
    if not known.is_dir():
        pytest.skip(f"shared photos not found at {known}")
    folder = tmp_path / "known"
    (folder / "obama").mkdir(parents=True)
    shutil.copy(known / "obama" / "obama.jpg", folder / "obama" / "a.jpg")
    shutil.copy(known / "biden" / "biden.jpg", folder / "biden.jpg")
    settings = DetectorSettings()
    stats = sync_folder(db, folder, photo_encoder(settings), "dlib", host=HOST)
    assert (stats.encoded, stats.added, stats.skipped) == (2, 2, 0)
    snap = db.snapshot("dlib")
    assert snap.names == ["biden", "obama"]  # in scan order
    for row, path in enumerate([folder / "biden.jpg", folder / "obama" / "a.jpg"]):
        faces = find_faces(images.read_image(path), settings)
        largest = max(faces, key=lambda face: box_area(face.box))
        assert np.allclose(snap.vectors[row], largest.encoding, atol=1e-6)
    assert np.linalg.norm(snap.vectors[0] - snap.vectors[1]) > 0.6
