"""The one-at-a-time client (REQ, lazy pirate) against an in-process peer: what it sends, what it
returns, and that it resends after a timeout and then gives up."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import zmq

from facewire.client.client import Client, Result, ServerError, ServerUnavailable, reply_outcome
from facewire.wire import protocol
from facewire.wire.keys import PLAIN, ClientKeys, ServerKeys

from .peers import Peer, deadline, marked, recognized, wait_until


def answer_ops(request) -> list[bytes]:
    """A gallery that knows two people; every op echoes what it was sent."""
    op = request.header["op"]
    if op == "ping":
        return protocol.pack_reply({"op": "ping", "version": "9.9", "people": 2, "photos": 3})
    if op == "list":
        return protocol.pack_reply({"op": "list", "people": {"ann": 2, "bob": 1}})
    if op == "enroll":
        return protocol.pack_reply({"op": "enroll", "name": request.header["name"], "photos": int(request.marker)})
    if op == "remove" and request.header["name"] == "nobody":
        return protocol.pack_error("not_found", "no person called nobody")
    if op == "recognize":
        frames = recognized(request)
        body, _ = protocol.unpack_reply(frames)
        return protocol.pack_reply({**body, "seen": request.header}, request.image)
    return protocol.pack_reply({"op": op, "seen": request.header})


def test_ping_and_gallery_ops_return_the_reply_body():
    with Peer(answer=answer_ops, hold=0) as peer, Client(peer.address, timeout=5) as client, deadline():
        assert client.ping() == {"ok": True, "op": "ping", "version": "9.9", "people": 2, "photos": 3}
        assert client.gallery_op("list")["people"] == {"ann": 2, "bob": 1}
        assert client.gallery_op("remove", name="ann")["seen"] == {"op": "remove", "name": "ann"}
        assert client.gallery_op("reload")["seen"] == {"op": "reload"}
        with pytest.raises(ServerError) as refused:
            client.gallery_op("remove", name="nobody")
    assert refused.value.code == "not_found" and str(refused.value) == "not_found: no person called nobody"
    assert [r.header["op"] for r in peer.received] == ["ping", "list", "remove", "reload", "remove"]


def test_enroll_sends_the_photo_under_the_name():
    with Peer(answer=answer_ops, hold=0) as peer, Client(peer.address, timeout=5, wire="png") as client, deadline():
        assert client.enroll("Zoë", marked(7)) == {"ok": True, "op": "enroll", "name": "Zoë", "photos": 7}
    [request] = peer.received
    assert request.header["op"] == "enroll" and request.header["encoding"] == "png"
    np.testing.assert_array_equal(request.image, marked(7))


@pytest.mark.parametrize("wire", ["raw", "png"])
def test_recognize_returns_faces_timings_and_the_image(wire):
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    with Peer(answer=answer_ops, hold=0) as peer, Client(peer.address, timeout=5, wire=wire) as client, deadline():
        result = client.recognize(image)
        plain = client.recognize(image, annotate=False, tolerance=0.5)
    assert isinstance(result, Result) and result.names == ["frame0"]
    assert result.faces[0].track == "token0" and result.timings_ms == {"total": 1.0}
    np.testing.assert_array_equal(result.image, image)
    seen = [r.header for r in peer.received]
    assert all(h.get("encoding", "raw") == wire for h in seen)
    assert seen[0]["annotate"] is True and "tolerance" not in seen[0]
    assert (seen[1]["annotate"], seen[1]["tolerance"]) == (False, 0.5)
    assert plain.names == ["frame0"]


def test_an_error_reply_becomes_server_error_with_its_code():
    refuse = lambda request: protocol.pack_error("too_large", "image of 9x9 pixels exceeds the limit")  # noqa: E731
    with Peer(answer=refuse, hold=0) as peer, Client(peer.address, timeout=5) as client, deadline():
        with pytest.raises(ServerError) as refused:
            client.recognize(marked(1))
    assert refused.value.code == "too_large"
    assert str(refused.value) == "too_large: image of 9x9 pixels exceeds the limit"


def test_an_error_reply_without_details_still_raises():
    bare = lambda request: [b'{"ok": false}']  # noqa: E731
    with Peer(answer=bare, hold=0) as peer, Client(peer.address, timeout=5) as client, deadline():
        with pytest.raises(ServerError) as refused:
            client.ping()
    assert refused.value.code == "unknown" and str(refused.value) == "unknown: "


def test_a_request_without_reply_is_resent_on_a_fresh_socket():
    first_try = lambda request, attempt: attempt == 1  # noqa: E731
    with Peer(answer=answer_ops, hold=0, ignore=first_try) as peer, \
            Client(peer.address, timeout=0.5, retries=2) as client, deadline():
        assert client.ping()["version"] == "9.9"
        result = client.recognize(marked(4))
    assert result.names == ["frame4"]
    pings = [r for r in peer.received if r.header["op"] == "ping"]
    assert len(pings) >= 2 and pings[0].identity != pings[1].identity  # reconnected, then resent


def test_the_client_gives_up_after_retries_plus_one_attempts():
    never = lambda request, attempt: True  # noqa: E731
    with Peer(ignore=never, hold=0) as peer, Client(peer.address, timeout=0.3, retries=2) as client, deadline():
        with pytest.raises(ServerUnavailable) as gone:
            client.ping()
        assert str(gone.value) == f"no reply from {peer.address} after 3 attempt(s) of 0.3 s"
        assert wait_until(lambda: len(peer.received) >= 3) and len(peer.received) == 3
    with Peer(ignore=never, hold=0) as peer, Client(peer.address, timeout=0.3, retries=0) as client, deadline():
        with pytest.raises(ServerUnavailable):
            client.ping()
        assert wait_until(lambda: len(peer.received) >= 1) and len(peer.received) == 1


def test_the_client_still_works_after_giving_up():
    """A timed-out REQ socket is replaced: the next request is not stuck behind the lost one."""
    lost = lambda request, attempt: request.header["op"] == "list"  # noqa: E731
    with Peer(answer=answer_ops, hold=0, ignore=lost) as peer, \
            Client(peer.address, timeout=0.3, retries=0) as client, deadline():
        with pytest.raises(ServerUnavailable):
            client.gallery_op("list")
        assert client.ping()["op"] == "ping"


def test_giving_up_is_logged_attempt_by_attempt(caplog):
    never = lambda request, attempt: True  # noqa: E731
    with Peer(ignore=never, hold=0) as peer, Client(peer.address, timeout=0.2, retries=1) as client, deadline():
        with caplog.at_level(logging.WARNING, logger="facewire.client.client"), pytest.raises(ServerUnavailable):
            client.ping()
    assert [r.getMessage() for r in caplog.records] == [
        f"no reply from {peer.address} in 0.2 s (attempt 1 of 2)",
        f"no reply from {peer.address} in 0.2 s (attempt 2 of 2)"]


def test_the_logged_timeout_is_in_seconds_to_a_tenth(caplog):
    never = lambda request, attempt: True  # noqa: E731
    with Peer(ignore=never, hold=0) as peer, Client(peer.address, timeout=0.45, retries=0) as client, deadline():
        with caplog.at_level(logging.WARNING, logger="facewire.client.client"), pytest.raises(ServerUnavailable):
            client.ping()
    assert [r.getMessage() for r in caplog.records] == [f"no reply from {peer.address} in 0.5 s (attempt 1 of 1)"]


def test_the_defaults_wait_20_seconds_and_retry_twice():
    with Client("tcp://127.0.0.1:9") as client:
        assert (client.timeout_ms, client.retries, client.wire, client.keys) == (20_000, 2, "raw", PLAIN)
    with Client("tcp://127.0.0.1:9", timeout=2.5) as client:
        assert client.timeout_ms == 2500


def curve_pair():
    server_public, server_secret = zmq.curve_keypair()
    client_public, client_secret = zmq.curve_keypair()
    server = ServerKeys(server_public, server_secret, Path("unused"), Path("unused"))
    return server, ClientKeys(client_public, client_secret, server_public)


def test_a_client_with_keys_talks_to_a_curve_server_and_one_without_cannot():
    server, keys = curve_pair()
    with Peer(answer=answer_ops, hold=0, secure=server.secure) as peer, deadline():
        with Client(peer.address, timeout=5, keys=keys) as client:
            assert client.ping()["version"] == "9.9"
            assert client.recognize(marked(3)).names == ["frame3"]
        with Client(peer.address, timeout=0.3, retries=0) as plain, pytest.raises(ServerUnavailable):
            plain.ping()


def test_a_reply_without_timings_has_none():
    bare = lambda request: protocol.pack_reply({"op": "recognize", "faces": []})  # noqa: E731
    with Peer(answer=bare, hold=0) as peer, Client(peer.address, timeout=5) as client, deadline():
        result = client.recognize(marked(1), annotate=False)
    assert result.timings_ms == {} and result.faces == [] and result.image is None


def test_a_recognize_reply_without_a_list_of_faces_is_a_bad_reply():
    for faces in ("x", None, {"name": "ann"}):
        outcome = reply_outcome(protocol.pack_reply({"op": "recognize", "faces": faces}))
        assert isinstance(outcome, protocol.BadReply) and str(outcome) == "a recognize reply without a list of faces"
    outcome = reply_outcome(protocol.pack_reply({"op": "recognize", "faces": [{"name": "ann"}]}))
    assert isinstance(outcome, protocol.BadReply) and str(outcome) == "not a face: {'name': 'ann'}"


def test_photo_asks_for_the_person_by_name_and_gives_the_image_of_the_reply():
    thumbnail = np.arange(5 * 4 * 3, dtype=np.uint8).reshape(5, 4, 3)

    def answer(request):
        image = thumbnail if request.header.get("name") == "ann" else None
        return protocol.pack_reply({"op": request.header.get("op"), "name": request.header.get("name")}, image)

    with Peer(answer=answer, hold=0.01) as peer, Client(peer.address, timeout=5, retries=0) as client, deadline():
        assert np.array_equal(client.photo("ann"), thumbnail)
        with pytest.raises(protocol.BadReply, match="a photo reply without its image"):
            client.photo("bob")
    assert [(r.header["op"], r.header["name"]) for r in peer.received] == [("photo", "ann"), ("photo", "bob")]


def test_verify_sends_two_images_or_one_and_a_name_and_returns_the_reply_body():
    answer = lambda request: protocol.pack_reply({"op": "verify", "same": True, "seen": request.header})  # noqa: E731
    with Peer(answer=answer, hold=0) as peer, Client(peer.address, timeout=5, retries=0) as client, deadline():
        body = client.verify(marked(1), marked(2, (3, 5)), tolerance=0.4)
        assert body["same"] is True and body["seen"] == {"op": "verify", "dtype": "uint8", "shape": [4, 6, 3],
                                                         "shape2": [3, 5], "tolerance": 0.4}
        assert client.verify(marked(3), name="ann")["seen"] == {"op": "verify", "dtype": "uint8", "shape": [4, 6, 3],
                                                                "name": "ann"}
    assert [r.marker for r in peer.received] == [1, 3]
    with Client("tcp://127.0.0.1:9") as client:
        for second, name in ((None, None), (marked(2), "ann")):
            with pytest.raises(ValueError, match="with image_b or with a name"):
                client.verify(marked(1), second, name)


def test_a_refused_verify_becomes_server_error_with_its_code():
    refuse = lambda request: protocol.pack_error("bad_photo", "image 2 must show exactly one face; it shows 2")  # noqa: E731
    with Peer(answer=refuse, hold=0) as peer, Client(peer.address, timeout=5, wire="jpeg") as client, deadline():
        with pytest.raises(ServerError) as refused:
            client.verify(marked(1), marked(2))
    assert refused.value.code == "bad_photo" and str(refused.value).endswith("it shows 2")
    [request] = peer.received
    assert request.header == {"op": "verify", "encoding": "jpeg"}
