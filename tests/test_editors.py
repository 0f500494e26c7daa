"""Who may change the gallery: with --keys only the keys in KEYS/editors/, with --read-only nobody.

Each case runs through the real server, both alone (--workers 1: its REP socket is the client's
peer) and behind its broker (--workers 2: the broker stamps each request with its sender)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
import zmq

from facewire.client.client import Client, ServerError
from facewire.faces import images
from facewire.process import ServerProcess
from facewire.wire import protocol
from facewire.wire.keys import ClientKeys, make_keys
from facewire.wire.ping import answers_ping

from .conftest import REPO_KNOWN, REPO_PROBES

PHOTO = images.read_image(REPO_KNOWN / "grace_hopper.jpg")


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("keys")
    make_keys(folder, clients=["vera"], editors=["eddie"])
    return folder


def key_of(keys: Path, name: str) -> ClientKeys:
    return ClientKeys.load(keys / f"{name}.key_secret", keys / "server.key")


@pytest.fixture(scope="module", params=["1", "2"], ids=["alone", "brokered"])
def keyed_server(request, keys, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"editors{request.param}")
    gallery = folder / "known"
    shutil.copytree(REPO_KNOWN, gallery, ignore=shutil.ignore_patterns(".*", "*.md"))
    with ServerProcess(gallery, folder / "server.log", "--keys", str(keys), "--workers", request.param,
                       wait=False) as server:
        deadline = time.monotonic() + 90
        while not answers_ping(server.address, 500, key_of(keys, "vera").secure):
            assert time.monotonic() < deadline, server.log()
        yield server


def refused(call) -> str:
    with pytest.raises(ServerError) as caught:
        call()
    assert caught.value.code == "forbidden"
    return str(caught.value)


def test_a_viewer_may_recognise_but_not_change_the_gallery(keyed_server, keys):
    with Client(keyed_server.address, timeout=30, keys=key_of(keys, "vera")) as vera:
        assert vera.recognize(images.read_image(REPO_PROBES / "grace_hopper.jpg")).names == ["grace_hopper"]
        assert vera.verify(images.read_image(REPO_PROBES / "grace_hopper.jpg"), name="grace_hopper")["same"] is True
        assert "vera" in refused(lambda: vera.enroll("vera_herself", PHOTO))
        refused(lambda: vera.gallery_op("remove", name="grace_hopper"))
        refused(lambda: vera.gallery_op("reload"))
        assert set(vera.gallery_op("list")["people"]) == {"grace_hopper"}
    assert "refused enroll from vera" in keyed_server.log()


def test_an_editor_may_enrol_and_remove_and_the_log_says_who(keyed_server, keys):
    with Client(keyed_server.address, timeout=30, keys=key_of(keys, "eddie")) as eddie:
        mark = keyed_server.log_mark()
        assert eddie.enroll("eddies_friend", PHOTO)["photos"] == 1
        keyed_server.wait_for_log("enrolled a photo of eddies_friend (by eddie)", since=mark)
        assert eddie.gallery_op("remove", name="eddies_friend")["removed"] == 1
        keyed_server.wait_for_log("removed eddies_friend (1 photos, by eddie)", since=mark)
        assert eddie.gallery_op("reload")["ok"] is True


def test_a_client_cannot_forge_the_brokers_stamp(keyed_server, keys):
    """A viewer's DEALER sends what a stamped request looks like: it arrives after the real stamp, and fails."""
    context = zmq.Context.instance()
    with context.socket(zmq.DEALER) as dealer:
        key_of(keys, "vera").secure(dealer)
        dealer.connect(keyed_server.address)
        enrol = protocol.pack_request("enroll", PHOTO, name="forged")
        dealer.send_multipart([b"", b"editor:eddie", *enrol])
        assert dealer.poll(30_000), "no reply"
        _, *reply = dealer.recv_multipart()
        body, _ = protocol.unpack_reply(reply)
    assert body["ok"] is False and body["error"]["code"] in ("bad_header", "bad_request", "forbidden")
    with Client(keyed_server.address, timeout=30, keys=key_of(keys, "vera")) as vera:
        assert "forged" not in vera.gallery_op("list")["people"]


def test_a_read_only_server_refuses_every_change(tmp_path):
    gallery = tmp_path / "known"
    shutil.copytree(REPO_KNOWN, gallery, ignore=shutil.ignore_patterns(".*", "*.md"))
    with ServerProcess(gallery, tmp_path / "server.log", "--read-only", "--workers", "2") as server:
        with Client(server.address, timeout=30) as client:
            assert "read-only" in refused(lambda: client.enroll("someone", PHOTO))
            assert "read-only" in refused(lambda: client.gallery_op("remove", name="grace_hopper"))
            refused(lambda: client.gallery_op("reload"))
            assert client.recognize(images.read_image(REPO_PROBES / "grace_hopper.jpg")).names == ["grace_hopper"]
            assert client.verify(images.read_image(REPO_PROBES / "grace_hopper.jpg"), PHOTO)["same"] is True
    assert sorted(p.name for p in gallery.iterdir() if not p.name.startswith(".")) == ["grace_hopper.jpg"]


def test_without_keys_everyone_may_edit(tmp_path):
    gallery = tmp_path / "known"
    shutil.copytree(REPO_KNOWN, gallery, ignore=shutil.ignore_patterns(".*", "*.md"))
    with ServerProcess(gallery, tmp_path / "server.log", "--workers", "2") as server:
        with Client(server.address, timeout=30) as client:
            assert client.enroll("newcomer", PHOTO)["photos"] == 1
        server.wait_for_log("enrolled a photo of newcomer (by anonymous)")
