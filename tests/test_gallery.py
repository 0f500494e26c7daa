"""The gallery on disk: both layouts, problem photos, and the content-hash encoding cache."""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from facewire.faces.matching import match_faces
from facewire.faces.settings import DetectorSettings, MatchSettings
from facewire.process import ROOT
from facewire.store import gallery as gallery_module
from facewire.store.gallery import DEFAULT_CACHE_NAME, encode_photo, load_gallery, read_cache, write_cache

from .conftest import REPO_KNOWN, REPO_PROBES

SETTINGS = DetectorSettings()


class CountingEncoder:
    """encode_photo that counts its calls, so tests can see what was (re)encoded."""

    def __init__(self):
        self.paths: list[Path] = []

    def __call__(self, path, settings):
        self.paths.append(path)
        return encode_photo(path, settings)


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


def test_both_layouts_give_one_name_per_photo(known):
    gallery, stats = load_gallery(known, SETTINGS)
    assert gallery.names == ("collins", "hopper")
    assert gallery.encodings.shape == (2, 128)
    assert stats.photos == 2 and stats.encoded == 2 and not stats.skipped


def test_several_photos_per_person(known):
    cv2.imwrite(str(known / "collins" / "two.webp"), cv2.flip(collins_crop(), 1))
    gallery, _ = load_gallery(known, SETTINGS)
    assert gallery.names == ("collins", "collins", "hopper")
    assert gallery.people == ["collins", "hopper"]


def test_problem_photos_are_logged_by_name_and_skipped(known, caplog):
    shutil.copy(REPO_PROBES / "no_face.jpg", known / "coffee.jpg")
    (known / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    with caplog.at_level(logging.WARNING):
        gallery, stats = load_gallery(known, SETTINGS)
    assert gallery.names == ("collins", "hopper")
    assert {(p.name, why) for p, why in stats.skipped} == {("coffee.jpg", "no face"), ("broken.jpg", "unreadable")}
    assert "coffee.jpg skipped: no face" in caplog.text
    assert "broken.jpg skipped: cannot be read" in caplog.text


def test_photo_with_several_faces_uses_the_largest(tmp_path, caplog):
    hopper = cv2.imread(str(REPO_PROBES / "grace_hopper.jpg"))
    collins = collins_crop()
    pad = np.zeros((hopper.shape[0] - collins.shape[0], collins.shape[1], 3), np.uint8)
    folder = tmp_path / "known"
    folder.mkdir()
    cv2.imwrite(str(folder / "pair.jpg"), np.hstack([hopper, np.vstack([collins, pad])]))
    with caplog.at_level(logging.WARNING):
        gallery, _ = load_gallery(folder, SETTINGS)
    assert "pair.jpg has 2 faces; using the largest" in caplog.text
    reference = encode_photo(REPO_KNOWN / "grace_hopper.jpg", SETTINGS).encoding
    assert match_faces(reference[None], gallery.encodings, gallery.names, MatchSettings(0.4))[0].name == "pair"


def test_warm_start_encodes_nothing(known):
    load_gallery(known, SETTINGS)
    encoder = CountingEncoder()
    gallery, stats = load_gallery(known, SETTINGS, encode=encoder)
    assert encoder.paths == [] and stats.from_cache == 2
    assert gallery.names == ("collins", "hopper")


def test_changed_added_and_removed_photos_reencode_only_themselves(known):
    first, _ = load_gallery(known, SETTINGS)
    cv2.imwrite(str(known / "collins" / "one.png"), cv2.flip(collins_crop(), 1))  # changed
    shutil.copy(REPO_PROBES / "grace_hopper.jpg", known / "hopper2.jpg")  # added
    encoder = CountingEncoder()
    gallery, _ = load_gallery(known, SETTINGS, encode=encoder)
    assert sorted(p.name for p in encoder.paths) == ["hopper2.jpg", "one.png"]
    (known / "hopper2.jpg").unlink()  # removed: gone from the gallery and the cache
    encoder = CountingEncoder()
    gallery, _ = load_gallery(known, SETTINGS, encode=encoder)
    assert encoder.paths == [] and gallery.names == ("collins", "hopper")
    assert len(read_cache(known / DEFAULT_CACHE_NAME, SETTINGS.cache_tag())) == 2


def test_cache_survives_renaming_a_person(known):
    load_gallery(known, SETTINGS)
    (known / "collins").rename(known / "eileen_collins")
    encoder = CountingEncoder()
    gallery, _ = load_gallery(known, SETTINGS, encode=encoder)
    assert encoder.paths == [] and gallery.names == ("eileen_collins", "hopper")


def test_photos_without_faces_are_cached_too(known):
    shutil.copy(REPO_PROBES / "no_face.jpg", known / "coffee.jpg")
    load_gallery(known, SETTINGS)
    encoder = CountingEncoder()
    _, stats = load_gallery(known, SETTINGS, encode=encoder)
    assert encoder.paths == [] and len(stats.skipped) == 1


@pytest.mark.parametrize(
    "spoil",
    [
        lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),  # truncated
        lambda path: path.write_bytes(b"garbage" * 100),
        lambda path: path.write_bytes(b""),
        # a foreign npz holding a pickled object array: must be refused, never unpickled
        lambda path: np.savez(open(path, "wb"), format=np.array([{"evil": 1}], dtype=object)),
    ],
    ids=["truncated", "garbage", "empty", "pickled-object"],
)
def test_corrupt_or_foreign_cache_is_rebuilt(known, spoil, caplog):
    load_gallery(known, SETTINGS)
    cache = known / DEFAULT_CACHE_NAME
    spoil(cache)
    encoder = CountingEncoder()
    with caplog.at_level(logging.WARNING):
        gallery, _ = load_gallery(known, SETTINGS, encode=encoder)
    assert len(encoder.paths) == 2 and gallery.names == ("collins", "hopper")
    assert "rebuilding" in caplog.text
    assert len(read_cache(cache, SETTINGS.cache_tag())) == 2


def test_cache_made_with_other_settings_is_not_used(known):
    load_gallery(known, SETTINGS)
    encoder = CountingEncoder()
    load_gallery(known, DetectorSettings(upsample=1), encode=encoder)
    assert len(encoder.paths) == 2


def test_failed_cache_write_leaves_the_old_cache_and_no_temp_file(known, monkeypatch):
    load_gallery(known, SETTINGS)
    cache = known / DEFAULT_CACHE_NAME
    before = cache.read_bytes()
    shutil.copy(REPO_PROBES / "grace_hopper.jpg", known / "hopper2.jpg")

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(gallery_module.np, "savez", crash)
    gallery, _ = load_gallery(known, SETTINGS)
    assert len(gallery.names) == 3  # the server still gets its gallery
    assert cache.read_bytes() == before
    assert [p.name for p in known.iterdir() if p.name.endswith(".tmp")] == []


def test_explicit_cache_path_and_empty_gallery(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    gallery, stats = load_gallery(empty, SETTINGS, tmp_path / "elsewhere.npz")
    assert gallery.names == () and gallery.encodings.shape == (0, 128) and stats.photos == 0


WRITER = """
import sys, numpy as np
from pathlib import Path
from facewire.store.gallery import CacheEntry, write_cache
path, rows = Path(sys.argv[1]), np.random.default_rng(0).normal(size=(2000, 128))
versions = [{f"{i:064x}": CacheEntry(1, rows[i]) for i in range(n)} for n in (1999, 2000)]
turn = 0
while True:
    write_cache(path, "tag", versions[turn % 2])
    turn += 1
"""


def test_cache_survives_kill_9_at_any_moment(tmp_path):
    cache = tmp_path / "cache.npz"
    chooser = random.Random(3)
    for _ in range(25):
        before = cache.stat().st_mtime_ns if cache.exists() else None
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(cache)], cwd=ROOT)
        deadline = time.monotonic() + 60
        while (cache.stat().st_mtime_ns if cache.exists() else None) == before:  # this writer has written once
            assert time.monotonic() < deadline and writer.poll() is None, "the writer never wrote the cache"
            time.sleep(0.01)
        time.sleep(chooser.uniform(0.0, 0.3))  # then a random moment, most likely inside a later write
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        assert len(read_cache(cache, "tag")) in (1999, 2000)  # the old version or the new, never half
    leftovers = list(tmp_path.glob("cache.npz*.tmp"))
    assert {p.name for p in tmp_path.iterdir()} - {p.name for p in leftovers} == {"cache.npz"}
    for temp in leftovers:  # a killed writer's temp file is swept up by a later write once it is stale
        os.utime(temp, (0, 0))
    write_cache(cache, "tag", {})
    assert list(tmp_path.glob("cache.npz*.tmp")) == []
