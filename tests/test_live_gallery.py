"""A gallery that changes live: enrol, list, remove and reload through the server, and edits on disk."""

from __future__ import annotations

import shutil
import time

import cv2
import pytest

from facewire.client.client import Client, ServerError
from facewire.faces import images
from facewire.process import ServerProcess
from facewire.store.live import FOLDER_CHECK_SECONDS
from facewire.store.names import EnrolError, check_name

from .conftest import REPO_KNOWN, REPO_PROBES, run_client


def collins_photo(tmp_path):
    """Eileen Collins, cut from the group picture and enlarged: a photo with one face."""
    group = images.read_image(REPO_PROBES / "group_small_faces.jpg")
    path = tmp_path / "collins.png"
    cv2.imwrite(str(path), cv2.resize(group[:, group.shape[1] // 2:], None, fx=3, fy=3))
    return path


@pytest.fixture
def live(tmp_path):
    known = tmp_path / "known"
    shutil.copytree(REPO_KNOWN, known, ignore=shutil.ignore_patterns(".*", "*.md"))
    with ServerProcess(known, tmp_path / "server.log", "--workers", "2") as server:
        yield server, known


def names_in_group(address: str, rounds: int = 4) -> list[list[str]]:
    """The group picture recognised several times, so that both workers answer."""
    picture = images.read_image(REPO_PROBES / "group_small_faces.jpg")
    with Client(address) as client:
        return [sorted(r.names) for r in client.recognize_many([picture] * rounds, in_flight=2, annotate=False)]


def test_enrol_list_and_remove_through_the_server(live, tmp_path):
    server, known = live
    assert names_in_group(server.address) == [["Unknown", "grace_hopper"]] * 4
    done = run_client("--server", server.address, "--enroll", "Eileen Collins", str(collins_photo(tmp_path)))
    assert done.returncode == 0 and "enrolled Eileen Collins: 1 photo(s)" in done.stdout, done.stderr
    assert len(list((known / "Eileen Collins").glob("*.jpg"))) == 1  # stored on disk
    assert names_in_group(server.address) == [["Eileen Collins", "grace_hopper"]] * 4  # every worker knows her
    listing = run_client("--server", server.address, "--list").stdout
    assert "Eileen Collins\t1" in listing and "grace_hopper\t1" in listing
    removed = run_client("--server", server.address, "--remove", "Eileen Collins")
    assert "removed Eileen Collins: 1 photo(s)" in removed.stdout
    assert not (known / "Eileen Collins").exists()
    assert names_in_group(server.address) == [["Unknown", "grace_hopper"]] * 4


def test_the_photo_op_gives_a_thumbnail_of_a_persons_first_photo_and_trusts_no_name(live, tmp_path):
    server, known = live
    first = sorted(p for p in known.iterdir() if p.name.startswith("grace_hopper"))[0]
    with Client(server.address) as client:
        thumbnail = client.photo("grace_hopper")
        original = images.read_image(first)
        assert max(thumbnail.shape[:2]) == 160 and thumbnail.shape[2] == 3
        resized = cv2.resize(original, thumbnail.shape[1::-1], interpolation=cv2.INTER_AREA)
        assert abs(thumbnail.astype(int) - resized).mean() < 1  # the gallery's photo, only resized
        for name, code in (("nobody", "not_found"), ("../grace_hopper", "bad_name"), (".cache", "bad_name")):
            with pytest.raises(ServerError) as refused:
                client.photo(name)
            assert refused.value.code == code, name


def place_whole(photo, target) -> None:
    """Put a photo into the gallery the way a careful user does: written beside it, then renamed in."""
    partial = target.with_suffix(".partial")  # not an image suffix: the gallery never reads it
    shutil.copy(photo, partial)
    partial.replace(target)


def names_within(address: str, expected: list[str], seconds: float) -> list[list[str]]:
    """The group's names (4 rounds), asked until every round gives `expected` or `seconds` pass."""
    deadline = time.monotonic() + seconds
    while True:
        names = names_in_group(address)
        if names == [expected] * 4 or time.monotonic() > deadline:
            return names


def test_edits_on_disk_are_picked_up_without_a_restart(live, tmp_path):
    server, known = live
    within = FOLDER_CHECK_SECONDS + 10  # a folder check, plus a reload on a busy machine
    (known / "eileen").mkdir()
    place_whole(collins_photo(tmp_path), known / "eileen" / "one.png")
    assert names_within(server.address, ["eileen", "grace_hopper"], within) == [["eileen", "grace_hopper"]] * 4
    (known / "eileen" / "one.png").unlink()  # inside a person's folder: seen at the next folder check
    assert names_within(server.address, ["Unknown", "grace_hopper"], within) == [["Unknown", "grace_hopper"]] * 4
    place_whole(collins_photo(tmp_path), known / "eileen" / "two.png")
    assert names_within(server.address, ["eileen", "grace_hopper"], within) == [["eileen", "grace_hopper"]] * 4
    shutil.rmtree(known / "eileen")
    assert run_client("--server", server.address, "--reload").returncode == 0
    assert names_in_group(server.address) == [["Unknown", "grace_hopper"]] * 4


@pytest.mark.parametrize("photo, code", [("no_face.jpg", "bad_photo"), ("group_small_faces.jpg", "bad_photo")])
def test_a_photo_must_show_exactly_one_face(live, photo, code):
    server, known = live
    with Client(server.address) as client, pytest.raises(ServerError) as info:
        client.enroll("someone", images.read_image(REPO_PROBES / photo))
    assert info.value.code == code
    assert not (known / "someone").exists()


@pytest.mark.parametrize("name", ["../evil", "a/b", "back\\slash", ".hidden", "", "  ", "bell\x07", "x" * 101])
def test_names_that_could_escape_the_gallery_are_refused(live, tmp_path, name):
    server, known = live
    photo = images.read_image(collins_photo(tmp_path))
    before = sorted(p.name for p in known.parent.rglob("*"))
    with Client(server.address) as client, pytest.raises(ServerError) as info:
        client.enroll(name, photo)
    assert info.value.code in ("bad_name", "bad_option")
    assert sorted(p.name for p in known.parent.rglob("*")) == before


def test_unicode_names_are_welcome(live, tmp_path):
    server, known = live
    with Client(server.address) as client:
        assert client.enroll("Émilie Brontë", images.read_image(collins_photo(tmp_path)))["photos"] == 1
        assert "Émilie Brontë" in client.gallery_op("list")["people"]
    assert (known / "Émilie Brontë").is_dir()


def test_removing_nobody_is_a_clear_error(live):
    server, _ = live
    done = run_client("--server", server.address, "--remove", "nobody")
    assert done.returncode == 1 and "not_found" in done.stderr


def test_check_name_normalises_and_refuses():
    assert check_name("  Ann  ") == "Ann"
    with pytest.raises(EnrolError):
        check_name("..")
