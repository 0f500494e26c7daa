"""The gallery database through the real server: deltas seen by every worker, nothing acknowledged lost
to kill -9, broken database files named, a new encoder re-encoding, and two hosts on one PostgreSQL."""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import zmq

from facewire.client.client import Client, ServerError
from facewire.faces import images
from facewire.process import ServerProcess, free_port
from facewire.wire import protocol

from .conftest import REPO_KNOWN, REPO_PROBES, SHARED_FACES

pytest_plugins = ("tests.postgres",)

ROOT = Path(__file__).resolve().parent.parent
OBAMA = images.read_image(SHARED_FACES / "known" / "obama" / "obama.jpg")
OBAMA_PROBE = images.read_image(SHARED_FACES / "test" / "obama1.jpg")
HOPPER_PROBE = images.read_image(REPO_PROBES / "grace_hopper.jpg")


def gallery_copy(target: Path) -> Path:
    shutil.copytree(REPO_KNOWN, target, ignore=shutil.ignore_patterns(".*", "*.md"))
    return target


def names(client: Client, image, times: int) -> list[list[str]]:
    return [client.recognize(image, annotate=False).names for _ in range(times)]


def test_an_enrol_and_a_removal_are_seen_by_every_worker_at_their_next_request(tmp_path):
    """Workers apply the change log before each request: the replies right after the acknowledgement,
    which the broker deals to every worker in turn, all know of the change."""
    with ServerProcess(gallery_copy(tmp_path / "known"), tmp_path / "server.log", "--workers", "2") as server:
        with Client(server.address, timeout=60) as client:
            assert names(client, OBAMA_PROBE, 4) == [["Unknown"]] * 4
            client.enroll("barack", OBAMA)
            assert names(client, OBAMA_PROBE, 4) == [["barack"]] * 4
            client.gallery_op("remove", name="barack")
            assert names(client, OBAMA_PROBE, 4) == [["Unknown"]] * 4
        log = server.log()
    assert log.count("gallery: 1 changes applied") >= 3  # the other worker learnt of each change from the log
    assert (tmp_path / "known" / "barack").exists() is False


def kill_all(server: ServerProcess) -> None:
    for pid in server.processes():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    server.process.wait(timeout=30)


def test_acknowledged_enrols_survive_kill_9_and_nothing_unsent_appears(tmp_path):
    """Bursts of enrols, each burst cut by SIGKILL of the server and all its workers at a random moment:
    afterwards every acknowledged enrol is listed, and nothing that was never sent."""
    known = gallery_copy(tmp_path / "known")
    chooser, acknowledged, sent = random.Random(15), [], []
    for burst in range(4):
        server = ServerProcess(known, tmp_path / f"server{burst}.log", "--workers", "2")
        with Client(server.address, timeout=30, retries=0) as client:
            for number in range(chooser.randint(3, 8)):
                name = f"p{burst}_{number}"
                sent.append(name)
                client.enroll(name, OBAMA)
                acknowledged.append(name)
        sent.append(f"p{burst}_cut")
        with zmq.Context.instance().socket(zmq.REQ) as cut:  # an enrol in flight when the kill comes
            cut.setsockopt(zmq.LINGER, 0)
            cut.connect(server.address)
            cut.send_multipart(protocol.pack_request("enroll", OBAMA, name=f"p{burst}_cut"))
            cut.poll(chooser.randint(0, 300))
            kill_all(server)
    with ServerProcess(known, tmp_path / "after.log", "--workers", "2") as server, \
            Client(server.address, timeout=60) as client:
        people = client.gallery_op("list")["people"]
    listed = set(people) - {"grace_hopper"}
    assert set(acknowledged) <= listed, f"lost: {set(acknowledged) - listed}"
    assert listed <= set(sent), f"never sent: {listed - set(sent)}"
    assert all(people[name] == 1 for name in listed)  # an enrol is there whole or not at all
    assert len(acknowledged) >= 12
    with sqlite3.connect(known / ".facewire.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.parametrize("spoil", ["truncated", "png", "other application"])
def test_a_broken_database_file_is_refused_by_name(tmp_path, spoil):
    known = gallery_copy(tmp_path / "known")
    database = tmp_path / "gallery.db"
    if spoil == "png":
        shutil.copy(REPO_PROBES / "no_face.jpg", database)
    elif spoil == "other application":
        with sqlite3.connect(database) as db:
            db.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    else:
        with ServerProcess(known, tmp_path / "first.log", "--db", f"sqlite:///{database}"):
            pass
        database.write_bytes(database.read_bytes()[: database.stat().st_size // 2])
    done = subprocess.run([sys.executable, str(ROOT / "server.py"), "--known-faces", str(known), "--workers", "1",
                           "--db", f"sqlite:///{database}", "--bind", f"tcp://127.0.0.1:{free_port()}"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert str(database) in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_new_encoder_re_encodes_the_stored_photos_at_start(tmp_path):
    known = gallery_copy(tmp_path / "known")
    with ServerProcess(known, tmp_path / "onnx.log", "--workers", "1") as server:
        with Client(server.address, timeout=60) as client:
            client.enroll("barack", OBAMA)
    with ServerProcess(known, tmp_path / "dlib.log", "--workers", "1", "--encoder", "dlib") as server:
        assert "2 photos re-encoded" in server.log()
        with Client(server.address, timeout=60) as client:
            assert client.recognize(OBAMA_PROBE, annotate=False).names == ["barack"]


def test_two_hosts_share_one_postgresql_gallery(tmp_path, postgres_database_url):
    """Two servers, each with its own workers and its own folder, on one PostgreSQL database: an enrol on
    one is recognised on the other, a removal on the other is seen on the first, and neither folder's
    sync takes the other's photos."""
    first_folder, second_folder = gallery_copy(tmp_path / "first"), tmp_path / "second"
    second_folder.mkdir()
    shutil.copytree(SHARED_FACES / "known" / "biden", second_folder / "biden")
    database = ["--db", postgres_database_url, "--workers", "2"]
    with ServerProcess(first_folder, tmp_path / "first.log", *database) as first, \
            ServerProcess(second_folder, tmp_path / "second.log", *database) as second, \
            Client(first.address, timeout=60) as one, Client(second.address, timeout=60) as two:
        assert set(one.gallery_op("list")["people"]) == {"grace_hopper", "biden"}
        assert names(two, HOPPER_PROBE, 4) == [["grace_hopper"]] * 4  # the first host's folder photo
        one.enroll("barack", OBAMA)
        assert names(two, OBAMA_PROBE, 4) == [["barack"]] * 4
        two.gallery_op("remove", name="barack")
        assert names(one, OBAMA_PROBE, 4) == [["Unknown"]] * 4
        assert (first_folder / "barack").is_dir()  # the first host's copy of the photo stays, out of the gallery
        first.wait_for_log("gallery: 1 changes applied")
        assert names(one, OBAMA_PROBE, 4) == [["Unknown"]] * 4  # its folder's next sync does not bring it back
    assert "2 removed" not in second.log() and "1 removed" not in second.log()


def test_a_viewer_cannot_see_photos_it_may_not_edit_through_a_forged_name(tmp_path):
    """The photo op takes a name, never a path: a name that looks like a path is refused."""
    with ServerProcess(gallery_copy(tmp_path / "known"), tmp_path / "server.log", "--workers", "1") as server:
        with Client(server.address, timeout=60) as client:
            with pytest.raises(ServerError) as caught:
                client.photo("../../etc/passwd")
    assert caught.value.code == "bad_name"
