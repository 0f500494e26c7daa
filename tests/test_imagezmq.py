"""imagezmq cameras as clients, unchanged: an `ImageSender` pointed at facewire reads the names from its reply.

The end-to-end tests use the real imagezmq package (pinned in requirements-dev.txt) against the real
server; the protocol tests build the same frames imagezmq's SerializingSocket sends.
"""

from __future__ import annotations

import json
import re
import threading
import time

import cv2
import numpy as np
import pytest
import zmq

from facewire.faces import images
from facewire.process import ServerProcess
from facewire.wire import protocol
from facewire.wire.limits import Limits
from facewire.wire.ping import answers_ping
from facewire.wire.protocol import parse_request

from .conftest import REPO_PROBES

imagezmq = pytest.importorskip("imagezmq")

WAIT_S = 120


def frames_of(msg, image: np.ndarray | None = None, jpg: bytes | None = None) -> list[bytes]:
    """What imagezmq's send_array (an image) or send_jpg (a JPEG) puts on the wire."""
    if jpg is not None:
        return [json.dumps({"msg": msg}).encode(), jpg]
    return [json.dumps({"msg": msg, "dtype": str(image.dtype), "shape": image.shape}).encode(), image.tobytes()]


def test_send_image_and_send_jpg_frames_are_recognize_requests_from_a_camera():
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    request = parse_request(frames_of("door", image))
    assert (request.op, request.framing, request.camera) == ("recognize", "imagezmq", "door")
    assert np.array_equal(request.image, image) and request.options.annotate is False
    jpg = parse_request(frames_of("yard", jpg=images.encode_compressed(image, "jpeg")))
    assert (jpg.camera, jpg.image.shape, jpg.options.encoding) == ("yard", (4, 6, 3), "jpeg")
    png = parse_request(frames_of("yard", jpg=images.encode_compressed(image, "png")))  # send_jpg of a PNG
    assert np.array_equal(png.image, image) and png.options.encoding == "png"


@pytest.mark.parametrize("frames, code", [
    (frames_of(7, np.zeros((2, 2, 3), np.uint8)), "bad_option"),  # msg not text
    (frames_of("cam\nINFO forged log line", np.zeros((2, 2, 3), np.uint8)), "bad_option"),
    (frames_of("x" * 257, np.zeros((2, 2, 3), np.uint8)), "bad_option"),
    ([json.dumps({"msg": "cam"}).encode()], "bad_request"),  # no image frame
    (frames_of("cam", jpg=b"not a jpeg"), "bad_image"),
    ([json.dumps({"msg": "cam", "dtype": "uint8", "shape": [2, 2, 3]}).encode(), b"short"], "bad_shape"),
    ([json.dumps({"msg": "cam", "dtype": "float64", "shape": [1, 1, 3]}).encode(), bytes(24)], "bad_dtype"),
    ([json.dumps({"msg": "cam", "dtype": "uint8", "shape": [100_000, 100_000, 3]}).encode(), b""], "too_large"),
    ([json.dumps({"msg": "cam", "dtype": "uint8"}).encode(), bytes(3)], "bad_option"),  # half an array header
])
def test_malformed_imagezmq_messages_are_refused_with_their_code(frames, code):
    with pytest.raises(protocol.ProtocolError) as error:
        parse_request(frames)
    assert error.value.code == code


def test_a_jpeg_that_declares_an_enormous_size_is_refused_before_decoding():
    small = images.encode_compressed(np.zeros((8, 8, 3), np.uint8), "jpeg")
    with pytest.raises(protocol.TooLarge):
        parse_request(frames_of("cam", jpg=small), Limits(max_pixels=10))


@pytest.fixture(scope="module")
def two_workers(repo_gallery, tmp_path_factory):
    with ServerProcess(repo_gallery, tmp_path_factory.mktemp("imagezmq") / "server.log", "--workers", "2") as server:
        yield server


def names_in(reply: bytes) -> list[str]:
    body = json.loads(reply)
    assert body["ok"] is True and all({"name", "distance", "confidence", "box"} <= set(f) for f in body["faces"])
    return sorted(face["name"] for face in body["faces"])


def test_an_unchanged_image_sender_reads_the_names_from_the_reply(two_workers):
    hopper = cv2.imread(str(REPO_PROBES / "grace_hopper.jpg"))
    group = cv2.imread(str(REPO_PROBES / "group_small_faces.jpg"))
    mark = two_workers.log_mark()
    with imagezmq.ImageSender(connect_to=two_workers.address) as sender:
        reply = sender.send_image("front door", hopper)
        assert isinstance(reply, bytes) and json.loads(reply)["msg"] == "front door"
        assert names_in(reply) == ["grace_hopper"]
        assert names_in(sender.send_image("front door", group)) == ["Unknown", "grace_hopper"]
        ok, jpg = cv2.imencode(".jpg", hopper)
        assert names_in(sender.send_jpg("garden", jpg.tobytes())) == ["grace_hopper"]
    log = two_workers.wait_for_log("camera 'garden'", since=mark)
    assert "camera 'front door', 358x420: grace_hopper" in log  # the hub operator sees who, and which camera


def test_a_malformed_imagezmq_message_gets_one_frame_error_and_the_server_keeps_serving(two_workers):
    with zmq.Context.instance().socket(zmq.REQ) as socket:
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(two_workers.address)
        socket.send_multipart(frames_of("porch", jpg=b"\xff\xd8 not really a jpeg"))
        assert socket.poll(WAIT_S * 1000)
        reply = socket.recv_multipart()
    assert len(reply) == 1 and json.loads(reply[0])["error"]["code"] == "bad_image"
    assert answers_ping(two_workers.address, 10_000)
    with imagezmq.ImageSender(connect_to=two_workers.address) as sender:
        hopper = cv2.imread(str(REPO_PROBES / "grace_hopper.jpg"))
        assert names_in(sender.send_image("porch", hopper)) == ["grace_hopper"]


def test_two_cameras_and_two_workers_every_frame_answered_right(two_workers):
    """Rounds of both cameras sending every sample, until both workers have served (readiness proves one)."""
    photos = {name: cv2.imread(str(REPO_PROBES / name)) for name in ("grace_hopper.jpg", "group_small_faces.jpg",
                                                                      "no_face.jpg")}
    expected = {"grace_hopper.jpg": ["grace_hopper"], "group_small_faces.jpg": ["Unknown", "grace_hopper"],
                "no_face.jpg": []}
    answers: dict[str, list[tuple[str, list[str]]]] = {"cam-1": [], "cam-2": []}
    mark = two_workers.log_mark()

    def camera(name: str) -> None:
        with imagezmq.ImageSender(connect_to=two_workers.address) as sender:
            for photo, image in photos.items():
                answers[name].append((photo, names_in(sender.send_image(name, image))))

    def served() -> set[str]:
        since = two_workers.log_path.read_bytes()[mark:].decode(errors="replace")
        return set(re.findall(r"facewire\.serve\.service\[(\d+)\]: camera 'cam-", since))

    deadline, rounds = time.monotonic() + WAIT_S, 0
    while rounds < 2 or (len(served()) < 2 and time.monotonic() < deadline):
        threads = [threading.Thread(target=camera, args=(name,), daemon=True) for name in answers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT_S)
        assert not any(thread.is_alive() for thread in threads), "a camera got no reply"
        rounds += 1
    for name, got in answers.items():
        assert len(got) == 3 * rounds and all(names == expected[photo] for photo, names in got), (name, got)
    log = two_workers.wait_for_log("camera 'cam-2'", since=mark)
    assert log.count("camera 'cam-1'") == log.count("camera 'cam-2'") == 3 * rounds  # each frame once, no retries
    assert len(served()) == 2
