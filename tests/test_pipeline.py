"""Many requests in flight (Client.recognize_many over facewire.pipeline), against an in-process peer
that answers out of order: results in input order, each its own input's; resends; stray replies dropped."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest
import zmq

from facewire.client.client import Client, Result, ServerError
from facewire.client.pipeline import Pipeline, ServerUnavailable
from facewire.wire import protocol
from facewire.wire.keys import ClientKeys, ServerKeys

from .peers import Peer, deadline, marked, recognized, wait_until


def names(results) -> list:
    return [r.names[0] if isinstance(r, Result) else r for r in results]


def test_results_come_back_in_input_order_each_from_its_own_image():
    with Peer(hold=0.2) as peer, Client(peer.address, timeout=5) as client, deadline():
        results = list(client.recognize_many([marked(v) for v in range(10, 17)], in_flight=3))
    assert names(results) == [f"frame{v}" for v in range(10, 17)]
    assert all(isinstance(r, Result) and r.timings_ms == {"total": 1.0} and r.image is None for r in results)
    replied = [request.marker for request in peer.received]
    assert sorted(replied) == list(range(10, 17))  # each image sent once: no resend was needed


def test_no_more_requests_are_outstanding_than_in_flight():
    with Peer(hold=0.5) as peer, Client(peer.address, timeout=5) as client, deadline():
        assert len(list(client.recognize_many([marked(v) for v in range(8)], in_flight=3))) == 8
    assert peer.max_outstanding == 3  # the peer holds every request until none comes: all in flight are there
    with Peer(hold=0.5) as peer, Client(peer.address, timeout=5) as client, deadline():
        assert len(list(client.recognize_many([marked(v) for v in range(3)]))) == 3
    assert peer.max_outstanding == 3  # fewer images than the default of 4: all at once


def test_the_default_keeps_four_in_flight():
    with Peer(hold=0.5) as peer, Client(peer.address, timeout=5) as client, deadline():
        assert len(list(client.recognize_many([marked(v) for v in range(6)]))) == 6
    assert peer.max_outstanding == 4


def test_with_a_window_a_request_waits_for_the_outcome_that_many_before_it():
    given: list = []
    taken_after: list[int] = []

    def requests():
        for value in range(9):
            taken_after.append(len(given))
            yield client.recognize_request(marked(value))

    with Peer(hold=0.2) as peer, Client(peer.address, timeout=5) as client, deadline():
        for outcome in client.in_order(requests(), in_flight=4, window=2):
            given.append(outcome)
    assert names(given) == [f"frame{v}" for v in range(9)]
    assert all(after >= index - 1 for index, after in enumerate(taken_after)), taken_after
    assert peer.max_outstanding == 2  # answered last-first: the window, not in_flight, held them back


def test_each_request_carries_its_options_and_a_distinct_id():
    with Peer() as peer, Client(peer.address, timeout=5, wire="png") as client, deadline():
        list(client.recognize_many([marked(1), marked(2)], annotate=False, tolerance=0.45))
        list(client.recognize_many([marked(3)]))
    headers = sorted((r.header for r in peer.received), key=lambda h: h["id"])
    assert [h["encoding"] for h in headers] == ["png"] * 3
    first, second, third = sorted(peer.received, key=lambda r: r.marker)
    assert (first.header["annotate"], first.header["tolerance"]) == (False, 0.45)
    assert (second.header["annotate"], second.header["tolerance"]) == (False, 0.45)
    assert third.header["annotate"] is True and "tolerance" not in third.header
    assert first.id != second.id


def test_an_item_that_is_an_exception_keeps_its_place():
    unreadable = OSError("cannot read b.jpg")
    with Peer() as peer, Client(peer.address, timeout=5) as client, deadline():
        results = list(client.recognize_many([marked(1), unreadable, marked(3), ValueError("x")]))
    assert names(results)[:3] == ["frame1", unreadable, "frame3"]
    assert isinstance(results[3], ValueError) and len(results) == 4
    assert sorted(r.marker for r in peer.received) == [1, 3]  # exceptions are not sent


def test_only_exceptions_and_no_images_at_all():
    with Peer() as peer, Client(peer.address, timeout=5) as client, deadline():
        errors = [OSError("a"), OSError("b")]
        assert list(client.recognize_many(errors)) == errors
        assert list(client.recognize_many([])) == []
    assert peer.received == []


def refuse_odd(request) -> list[bytes]:
    if request.marker % 2:
        return protocol.pack_error("bad_image", f"odd {request.marker}", request.id)
    return recognized(request)


def test_a_refused_image_yields_its_server_error_in_its_place():
    with Peer(answer=refuse_odd) as peer, Client(peer.address, timeout=5) as client, deadline():
        results = list(client.recognize_many([marked(v) for v in range(4)]))
    assert names(results[0::2]) == ["frame0", "frame2"]
    assert all(isinstance(r, ServerError) for r in results[1::2])
    assert [(r.code, str(r)) for r in results[1::2]] == [("bad_image", "bad_image: odd 1"),
                                                        ("bad_image", "bad_image: odd 3")]
    assert len(peer.received) == 4


def test_duplicate_late_and_stray_replies_are_dropped():
    with Peer(duplicates=True, noise=True) as peer, Client(peer.address, timeout=5) as client, deadline():
        results = list(client.recognize_many([marked(v) for v in range(6)], in_flight=3))
    assert names(results) == [f"frame{v}" for v in range(6)]
    assert len(peer.received) == 6


def test_a_request_left_unanswered_is_resent_and_the_order_kept():
    first_try_of_1 = lambda request, attempt: request.marker == 1 and attempt == 1  # noqa: E731
    with Peer(ignore=first_try_of_1) as peer, Client(peer.address, timeout=0.5, retries=2) as client, deadline():
        results = list(client.recognize_many([marked(v) for v in range(4)], in_flight=4))
    assert names(results) == ["frame0", "frame1", "frame2", "frame3"]
    assert peer.count(_id_of(peer, 1)) >= 2


def _id_of(peer: Peer, marker: int):
    [request_id] = {r.id for r in peer.received if r.marker == marker}
    return request_id


# --- the Pipeline itself --------------------------------------------------------------------------

@pytest.fixture
def context():
    context = zmq.Context()
    yield context
    context.term()


def pipeline_to(context: zmq.Context, address: str, timeout: float = 5.0, retries: int = 2) -> Pipeline:
    return Pipeline(context, address, timeout, retries)


def test_pipeline_receive_returns_each_reply_under_its_request_id(context):
    with Peer(hold=0.2) as peer, deadline():
        pipeline = pipeline_to(context, peer.address)
        try:
            for request_id, value in ((7, 70), (8, 80), (9, 90)):
                pipeline.send(request_id, protocol.pack_request("recognize", marked(value), id=request_id))
            assert len(pipeline) == 3
            got = {}
            while pipeline:
                request_id, frames = pipeline.receive()
                body, _ = protocol.unpack_reply(frames)
                got[request_id] = body["faces"][0]["name"]
            assert got == {7: "frame70", 8: "frame80", 9: "frame90"} and len(pipeline) == 0
        finally:
            pipeline.close()


def test_pipeline_gives_up_after_retries_plus_one_attempts(context):
    never = lambda request, attempt: True  # noqa: E731
    with Peer(ignore=never) as peer, deadline():
        pipeline = pipeline_to(context, peer.address, timeout=0.3, retries=2)
        try:
            pipeline.send(5, protocol.pack_request("recognize", marked(5), id=5))
            with pytest.raises(ServerUnavailable) as gone:
                pipeline.receive()
        finally:
            pipeline.close()
        assert "3 attempt(s)" in str(gone.value) and peer.address in str(gone.value)
        assert wait_until(lambda: peer.count(5) >= 3) and peer.count(5) == 3


def test_pipeline_resends_every_pending_request_after_a_timeout(context):
    late = lambda request, attempt: attempt == 1  # noqa: E731
    with Peer(ignore=late) as peer, deadline():
        pipeline = pipeline_to(context, peer.address, timeout=2.0, retries=1)
        try:
            pipeline.send(1, protocol.pack_request("recognize", marked(1), id=1))
            pipeline.send(2, protocol.pack_request("recognize", marked(2), id=2))
            replies = sorted(pipeline.receive()[0] for _ in range(2))
        finally:
            pipeline.close()
        assert replies == [1, 2]
        assert peer.count(1) == peer.count(2) == 2  # one timeout: every pending request resent once


def test_a_server_that_never_answers_is_server_unavailable_after_retries_plus_one_attempts():
    """Raised, or yielded in the images' places: either way the caller learns the server is gone."""
    never = lambda request, attempt: True  # noqa: E731
    with Peer(ignore=never) as peer, Client(peer.address, timeout=0.3, retries=1) as client, deadline():
        try:
            outcomes = list(client.recognize_many([marked(1)]))
        except ServerUnavailable as exc:
            outcomes = [exc]
        assert len(outcomes) == 1 and isinstance(outcomes[0], ServerUnavailable)
        assert str(outcomes[0]) == f"no reply from {peer.address} after 2 attempt(s) of 0.3 s"
        assert wait_until(lambda: peer.count(0) >= 2) and peer.count(0) == 2


def broken_image(request) -> list[bytes]:
    body = {"ok": True, "op": "recognize", "id": request.id, "faces": [],
            "image": {"dtype": "uint8", "shape": [4, 6, 3], "encoding": "png"}}
    return [json.dumps(body).encode(), b"not a png"]


def test_a_reply_whose_image_is_broken_is_that_images_error():
    with Peer(answer=broken_image) as peer, Client(peer.address, timeout=5) as client, deadline():
        [outcome] = list(client.recognize_many([marked(1)]))
    assert isinstance(outcome, protocol.ProtocolError) and outcome.code == "bad_reply"
    assert len(peer.received) == 1  # answered, not resent


def test_recognize_many_with_keys_talks_to_a_curve_server():
    server_public, server_secret = zmq.curve_keypair()
    public, secret = zmq.curve_keypair()
    server = ServerKeys(server_public, server_secret, Path("unused"), Path("unused"))
    keys = ClientKeys(public, secret, server_public)
    with Peer(secure=server.secure) as peer, Client(peer.address, timeout=5, retries=0, keys=keys) as client, \
            deadline():
        assert names(client.recognize_many([marked(1), marked(2)])) == ["frame1", "frame2"]


def test_a_resend_is_logged(context, caplog):
    late = lambda request, attempt: attempt == 1  # noqa: E731
    with Peer(ignore=late) as peer, deadline():
        pipeline = pipeline_to(context, peer.address, timeout=0.5, retries=1)
        try:
            pipeline.send(1, protocol.pack_request("recognize", marked(1), id=1))
            with caplog.at_level(logging.WARNING, logger="facewire.client.pipeline"):
                assert pipeline.receive()[0] == 1
        finally:
            pipeline.close()
    assert [r.getMessage() for r in caplog.records] == [
        f"no reply from {peer.address} in 0.5 s; reconnecting and resending 1 request(s)"]


def test_a_refused_curve_handshake_never_blocks_a_send(context):
    """A client without the server's key: every attempt is lost, none blocks, and the pipeline gives up."""
    server_public, server_secret = zmq.curve_keypair()
    server = ServerKeys(server_public, server_secret, Path("unused"), Path("unused"))
    with Peer(secure=server.secure) as peer, deadline():
        pipeline = pipeline_to(context, peer.address, timeout=0.3, retries=1)
        try:
            for request_id in range(3):
                pipeline.send(request_id, protocol.pack_request("recognize", marked(request_id), id=request_id))
            with pytest.raises(ServerUnavailable):
                pipeline.receive()
        finally:
            pipeline.close()
    assert peer.received == []


# --- a server gone for good: exactly one outcome per image ----------------------------------------

def test_once_the_server_is_gone_every_image_still_gets_exactly_one_outcome():
    """Images 2 and 3 are pending when the server stops answering: both yield the ServerUnavailable
    that ended them; an unreadable item keeps its own error; image 5, never sent, yields "not sent"."""
    gone_from_2 = lambda request, attempt: request.marker >= 2  # noqa: E731
    unreadable = OSError("cannot read e.jpg")
    items = [marked(0), marked(1), marked(2), marked(3), unreadable, marked(5)]
    with Peer(ignore=gone_from_2, hold=0) as peer, Client(peer.address, timeout=0.3, retries=1) as client, \
            deadline():
        outcomes = list(client.recognize_many(items, in_flight=2))
        assert wait_until(lambda: peer.count(_id_of(peer, 3)) >= 2)
    assert len(outcomes) == 6 and names(outcomes[:2]) == ["frame0", "frame1"]
    assert isinstance(outcomes[2], ServerUnavailable) and outcomes[3] is outcomes[2]
    given_up = f"no reply from {peer.address} after 2 attempt(s) of 0.3 s"
    assert str(outcomes[2]) == given_up
    assert outcomes[4] is unreadable
    assert isinstance(outcomes[5], ServerUnavailable)
    assert str(outcomes[5]) == f"not sent: the server is gone ({given_up})"
    assert sorted(r.marker for r in peer.received) == [0, 1, 2, 2, 3, 3]  # nothing sent after giving up


def test_once_the_server_is_gone_each_later_image_is_answered_as_it_is_read():
    """Images that will never be sent are not read ahead: each outcome comes out before the next image is read
    (a folder of thousands reports at once, not after reading them all)."""
    never = lambda request, attempt: True  # noqa: E731
    read: list[int] = []
    seen: list[int] = []

    def images():
        for value in range(4):
            read.append(value)
            yield marked(value)

    with Peer(ignore=never, hold=0) as peer, Client(peer.address, timeout=0.2, retries=0) as client, deadline():
        for outcome in client.recognize_many(images(), in_flight=1):
            assert isinstance(outcome, ServerUnavailable)
            seen.append(len(read))
    assert seen == [1, 2, 3, 4]  # each outcome is given before the next image is read
    assert [r.marker for r in peer.received] == [0]


def test_abandon_gives_the_pending_ids_and_their_late_replies_are_dropped(context):
    with Peer(hold=0.3) as peer, deadline():
        pipeline = pipeline_to(context, peer.address)
        try:
            for request_id in (4, 2, 9):
                pipeline.send(request_id, protocol.pack_request("recognize", marked(request_id), id=request_id))
            assert pipeline.abandon() == [4, 2, 9]
            assert len(pipeline) == 0 and not pipeline
            assert wait_until(lambda: len(peer.received) == 3 and peer.outstanding == 0)  # all three answered
            pipeline.send(7, protocol.pack_request("recognize", marked(7), id=7))
            request_id, frames = pipeline.receive()  # the replies to 4, 2 and 9 come first: none is returned
            assert request_id == 7 and protocol.unpack_reply(frames)[0]["faces"][0]["name"] == "frame7"
            assert pipeline.abandon() == [] and len(pipeline) == 0
        finally:
            pipeline.close()


def test_waiting_for_a_reply_sleeps_rather_than_spins(context):
    """Half a second waiting on a slow peer costs next to no CPU: receive() blocks in poll until a reply or a deadline."""
    with Peer(hold=0.5) as peer, deadline():
        pipeline = pipeline_to(context, peer.address, timeout=5.0)
        try:
            pipeline.send(1, protocol.pack_request("recognize", marked(1), id=1))
            cpu, wall = time.process_time(), time.monotonic()
            assert pipeline.receive()[0] == 1
            cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        finally:
            pipeline.close()
    assert wall >= 0.4 and cpu < 0.25 * wall, (cpu, wall)


def test_images_that_are_not_iterable_raise_and_the_client_still_closes():
    """The pipeline's socket is closed even then, so the context can terminate (a kept traceback holds the frame)."""
    client = Client("tcp://127.0.0.1:9", timeout=0.2)
    with pytest.raises(TypeError) as raised:
        list(client.recognize_many(5))
    with deadline(5):
        client.close()
    assert "not iterable" in str(raised.value)


def test_a_pipeline_that_cannot_connect_raises_and_leaves_no_socket_open():
    context = zmq.Context()
    with pytest.raises(zmq.ZMQError) as failed:
        Pipeline(context, "not an address", 1.0, 0)
    with deadline(5):
        context.term()  # would wait forever for a socket left open (the kept traceback holds it)
    assert "not an address" in str(failed.value)
