"""The gallery folder in memory (`folder_gallery`): both layouts, problem photos, and what a second call reads."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from facewire.faces import images
from facewire.faces.boxes import box_area
from facewire.faces.recognize import find_faces
from facewire.faces.settings import DetectorSettings
from facewire.store import sync
from facewire.store.live import folder_gallery

from .conftest import REPO_KNOWN, REPO_PROBES

SETTINGS = DetectorSettings()
FLOAT32 = 1e-5
"""The database stores float32 vectors: a direct encoding and the gallery's row agree within this."""


def largest_face_encoding(path: Path, settings: DetectorSettings = SETTINGS) -> np.ndarray:
    """The encoding of a photo's largest face, found directly (as a gallery photo's), without the database."""
    faces = find_faces(images.read_image(path), settings)
    return max(faces, key=lambda face: box_area(face.box)).encoding


def refuse_reading(path: Path) -> bytes:
    """The sync's file read, where no file may be read."""
    raise AssertionError(f"{path} was read")


def collins_crop() -> np.ndarray:
    """Eileen Collins' small face: the right half of the group picture."""
    group = cv2.imread(str(REPO_PROBES / "group_small_faces.jpg"))
    return group[:, group.shape[1] // 2:]


@pytest.fixture
def known(tmp_path) -> Path:
    """NAME.ext and NAME/ layouts side by side, with an upper-case suffix and clutter to ignore."""
    folder = tmp_path / "known"
    folder.mkdir()
    shutil.copy(REPO_KNOWN / "grace_hopper.jpg", folder / "hopper.JPG")
    (folder / "collins").mkdir()
    cv2.imwrite(str(folder / "collins" / "one.png"), collins_crop())
    (folder / "notes.txt").write_text("not a photo")
    shutil.copy(REPO_KNOWN / "grace_hopper.jpg", folder / ".hidden.jpg")
    return folder


@pytest.fixture
def db_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'gallery.db'}"


def test_both_layouts_give_each_photos_largest_face(known, db_url, shared_faces):
    (known / "biden").symlink_to(shared_faces / "known" / "biden", target_is_directory=True)
    (known / "obama.jpg").symlink_to(shared_faces / "known" / "obama" / "obama.jpg")
    rows = [("biden", known / "biden" / "biden.jpg"), ("biden", known / "biden" / "biden2.jpg"),
            ("collins", known / "collins" / "one.png"), ("hopper", known / "hopper.JPG"),
            ("obama", known / "obama.jpg")]
    gallery, stats = folder_gallery(known, SETTINGS, db_url)
    assert gallery.names == tuple(name for name, _ in rows)
    assert gallery.people == ["biden", "collins", "hopper", "obama"]
    expected = np.array([largest_face_encoding(path) for _, path in rows])
    assert np.allclose(gallery.encodings, expected, rtol=0, atol=FLOAT32)
    assert (stats.sync.seen, stats.sync.encoded, stats.sync.added, stats.sync.skipped) == (5, 5, 5, 0)


def test_photo_with_several_faces_uses_the_largest(tmp_path, db_url, caplog):
    hopper = cv2.imread(str(REPO_PROBES / "grace_hopper.jpg"))
    collins = collins_crop()
    pad = np.zeros((hopper.shape[0] - collins.shape[0], collins.shape[1], 3), np.uint8)
    folder = tmp_path / "known"
    folder.mkdir()
    cv2.imwrite(str(folder / "pair.jpg"), np.hstack([hopper, np.vstack([collins, pad])]))
    with caplog.at_level(logging.WARNING):
        gallery, _ = folder_gallery(folder, SETTINGS, db_url)
    assert "pair.jpg has 2 faces; using the largest" in caplog.text
    assert gallery.names == ("pair",)
    assert np.allclose(gallery.encodings[0], largest_face_encoding(folder / "pair.jpg"), rtol=0, atol=FLOAT32)
    assert np.linalg.norm(gallery.encodings[0] - largest_face_encoding(REPO_KNOWN / "grace_hopper.jpg")) < 0.4


def test_photos_with_no_face_or_unreadable_are_skipped_and_counted(known, db_url, caplog):
    shutil.copy(REPO_PROBES / "no_face.jpg", known / "coffee.jpg")
    (known / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    with caplog.at_level(logging.WARNING):
        gallery, stats = folder_gallery(known, SETTINGS, db_url)
    assert gallery.names == ("collins", "hopper") and gallery.encodings.shape == (2, 128)
    assert (stats.sync.seen, stats.sync.added, stats.sync.skipped) == (4, 2, 2)
    assert "coffee.jpg skipped: no face found" in caplog.text
    assert "broken.jpg skipped: cannot be read" in caplog.text


def test_a_second_call_reads_no_unchanged_file_and_gives_the_same_arrays(known, db_url, monkeypatch):
    shutil.copy(REPO_PROBES / "no_face.jpg", known / "coffee.jpg")
    first, _ = folder_gallery(known, SETTINGS, db_url)
    monkeypatch.setattr(sync, "read_photo", refuse_reading)
    second, stats = folder_gallery(known, SETTINGS, db_url)
    assert (stats.sync.seen, stats.sync.unchanged, stats.sync.hashed, stats.sync.encoded) == (3, 3, 0, 0)
    assert stats.reencoded == 0
    assert second.names == first.names == ("collins", "hopper")
    assert np.array_equal(second.encodings, first.encodings)


def test_a_changed_photo_is_reencoded_alone(known, db_url):
    first, _ = folder_gallery(known, SETTINGS, db_url)
    changed = known / "collins" / "one.png"
    cv2.imwrite(str(changed), cv2.flip(collins_crop(), 1))
    gallery, stats = folder_gallery(known, SETTINGS, db_url)
    assert (stats.sync.unchanged, stats.sync.encoded, stats.sync.added) == (1, 1, 1)
    assert gallery.names == ("collins", "hopper")
    assert np.allclose(gallery.encodings[0], largest_face_encoding(changed), rtol=0, atol=FLOAT32)
    assert not np.allclose(gallery.encodings[0], first.encodings[0], rtol=0, atol=FLOAT32)
    assert np.array_equal(gallery.encodings[1], first.encodings[1])


def test_a_removed_photo_leaves_the_gallery(known, db_url):
    first, _ = folder_gallery(known, SETTINGS, db_url)
    (known / "hopper.JPG").unlink()
    gallery, stats = folder_gallery(known, SETTINGS, db_url)
    assert stats.sync.removed == 1
    assert gallery.names == ("collins",) and np.array_equal(gallery.encodings, first.encodings[:1])


def test_other_settings_get_their_own_encodings_from_the_stored_photos(known, db_url, monkeypatch):
    first, _ = folder_gallery(known, SETTINGS, db_url)
    other = DetectorSettings(detector="hog")  # another detector: other boxes, so other encodings
    monkeypatch.setattr(sync, "read_photo", refuse_reading)
    gallery, stats = folder_gallery(known, other, db_url)
    assert stats.reencoded == 2 and stats.sync.encoded == 0
    assert gallery.names == ("collins", "hopper")
    expected = np.array([largest_face_encoding(known / "collins" / "one.png", other),
                         largest_face_encoding(known / "hopper.JPG", other)])
    assert np.allclose(gallery.encodings, expected, rtol=0, atol=FLOAT32)
    assert not np.allclose(gallery.encodings, first.encodings, rtol=0, atol=FLOAT32)


def test_an_empty_folder_gives_an_empty_gallery(tmp_path, db_url):
    empty = tmp_path / "empty"
    empty.mkdir()
    gallery, stats = folder_gallery(empty, SETTINGS, db_url)
    assert gallery.names == () and gallery.encodings.shape == (0, 128) and stats.sync.seen == 0
