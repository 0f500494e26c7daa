"""Fuzzing the wire protocol: random and mutated multipart messages against a real server.

Every message must get a reply (an error or a result) in time, the server must never die,
and a valid request must still work afterwards.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facewire.client.client import Client
from facewire.process import ServerProcess
from facewire.wire import protocol
from facewire.wire.ping import answers_ping

from .conftest import REPO_PROBES

EXAMPLES = 2500

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False), st.text(max_size=20),
)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
shapes = st.one_of(
    st.lists(st.integers(min_value=-3, max_value=40), min_size=0, max_size=4),
    st.lists(st.integers(min_value=-(2**64), max_value=2**64), min_size=2, max_size=3),
    json_values,
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "op": st.one_of(st.sampled_from(["recognize", "ping", "verify", "", "RECOGNIZE"]), json_values),
        "dtype": st.one_of(st.sampled_from(["uint8", "float32", "<u1", "uint16"]), json_values),
        "shape": shapes,
        "shape2": shapes,
        "name": st.one_of(st.sampled_from(["grace_hopper", "nobody", "../x"]), json_values),
        "tolerance": st.one_of(st.floats(allow_nan=False), json_values),
        "annotate": json_values,
        "encoding": st.one_of(st.sampled_from(protocol.ENCODINGS), json_values),
        "id": json_values,
        "surprise": json_values,
    },
)


def small_image_bytes(fmt: str) -> bytes:
    image = cv2.imread(str(REPO_PROBES / "group_small_faces.jpg"))
    return cv2.imencode(".jpg" if fmt == "jpeg" else ".png", image)[1].tobytes()


@st.composite
def mutated(draw, data: bytes) -> bytes:
    """A valid file with a few bytes changed, cut short, or extended."""
    buffer = bytearray(data)
    for _ in range(draw(st.integers(0, 8))):
        buffer[draw(st.integers(0, len(buffer) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(1, len(buffer)))
    return bytes(buffer[:cut]) + draw(st.binary(max_size=16))


header_frames = st.one_of(
    headers.map(lambda h: json.dumps(h).encode()),
    st.binary(max_size=64),
    json_values.map(lambda v: json.dumps(v).encode()),
)
pixel_frames = st.one_of(
    st.binary(max_size=4000),
    st.integers(0, 40 * 40 * 4).map(lambda n: bytes(n)),
    mutated(small_image_bytes("jpeg")),
    mutated(small_image_bytes("png")),
)
@st.composite
def raw_image(draw) -> tuple[list[int], bytes]:
    """A shape and random pixels, a byte too few or too many now and then."""
    shape = [draw(st.integers(1, 48)), draw(st.integers(1, 48))] + draw(st.sampled_from([[], [1], [3], [4]]))
    size = max(0, int(np.prod(shape)) + draw(st.sampled_from([0, 0, 0, -1, 1])))
    return shape, draw(st.binary(min_size=size, max_size=size))


@st.composite
def near_valid(draw) -> list[bytes]:
    """Requests that pass most checks: right shapes with random pixels, or mutated JPEG/PNG files; to recognize,
    or to verify (two images, or one and a name)."""
    op = draw(st.sampled_from(["recognize", "recognize", "verify"]))
    header: dict = {"op": op, "name": "grace_hopper"} if op == "verify" and draw(st.booleans()) else {"op": op}
    count = 2 if op == "verify" and "name" not in header else 1
    if draw(st.booleans()):
        fmt = draw(st.sampled_from(["jpeg", "png"]))
        files = [draw(mutated(small_image_bytes(fmt))) for _ in range(count)]
        return [json.dumps({**header, "encoding": fmt}).encode(), *files]
    (shape, pixels), *second = [draw(raw_image()) for _ in range(count)]
    header.update({"dtype": "uint8", "shape": shape})
    if op == "recognize":
        header["annotate"] = draw(st.booleans())
    if second:
        header["shape2"] = second[0][0]
    return [json.dumps(header).encode(), pixels, *(frame for _, frame in second)]


messages = st.one_of(st.lists(st.one_of(header_frames, pixel_frames), min_size=1, max_size=4), near_valid())


def test_every_message_gets_an_answer_and_the_server_stays_right(repo_gallery, tmp_path):
    counted = {"sent": 0, "ok": 0, "refused": 0}
    with ServerProcess(repo_gallery, tmp_path / "server.log", "--workers", "1") as server, zmq.Context() as context:

        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                         HealthCheck.large_base_example])
        @given(frames=messages)
        def answered(frames: list[bytes]) -> None:
            with context.socket(zmq.REQ) as socket:
                socket.setsockopt(zmq.LINGER, 0)
                socket.connect(server.address)
                socket.send_multipart(frames)
                assert socket.poll(20000), f"no reply to {[f[:80] for f in frames]}"
                reply = socket.recv_multipart()
            body = json.loads(reply[0])
            assert isinstance(body, dict) and "ok" in body or set(body) == {"dtype", "shape"}  # classic framing
            counted["sent"] += 1
            counted["ok" if body.get("ok", True) else "refused"] += 1

        answered()
        assert server.alive() and answers_ping(server.address)
        with Client(server.address) as client:
            assert client.recognize(cv2.imread(str(REPO_PROBES / "grace_hopper.jpg"))).names == ["grace_hopper"]
        assert counted["sent"] >= EXAMPLES, counted
        print(f"fuzz: {counted}")
        assert "Traceback" not in server.log()
