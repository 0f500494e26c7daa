"""Unit tests of frame validation: every malformed request is refused with a clear code."""

import json

import numpy as np
import pytest

from facewire import protocol
from facewire.protocol import Limits, ProtocolError, parse_request


def header(**fields) -> bytes:
    return json.dumps(fields).encode()


def refused(frames, limits=Limits()) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_request(frames, limits)
    assert info.value.message
    return info.value


def test_recognize_request_round_trips_the_image():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    request = parse_request(protocol.pack_request("recognize", image, tolerance=0.5))
    assert request.op == "recognize" and not request.classic
    assert request.options == {"tolerance": 0.5}
    np.testing.assert_array_equal(request.image, image)


@pytest.mark.parametrize("shape", [(4, 5), (4, 5, 1), (4, 5, 3), (4, 5, 4)])
def test_grey_bgr_and_bgra_layouts_are_accepted(shape):
    image = np.zeros(shape, dtype=np.uint8)
    assert parse_request(protocol.pack_request("recognize", image)).image.shape == shape


def test_classic_send_array_pair_is_recognised():
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    request = parse_request(protocol.pack_classic(image))
    assert request.op == "recognize" and request.classic


def test_ping_needs_one_frame():
    assert parse_request([header(op="ping")]).op == "ping"
    assert refused([header(op="ping"), b"x"]).code == "bad_request"


@pytest.mark.parametrize(
    "frames, code",
    [
        ([], "bad_request"),
        ([b"\xff\xfe not json"], "bad_header"),
        ([b"{truncated"], "bad_header"),
        ([b"[1, 2, 3]"], "bad_header"),
        ([b'"a string"'], "bad_header"),
        ([b"[" * 100000], "too_large"),
        ([header(op="explode")], "unknown_op"),
        ([header(op=None, dtype="uint8")], "unknown_op"),
        ([header(op="recognize", dtype="uint8", shape=[1, 1, 3])], "bad_request"),
        ([header(op="recognize", dtype="uint8", shape=[1, 1, 3]), b"abc", b"extra"], "bad_request"),
        ([header(op="recognize", dtype="float32", shape=[1, 1, 3]), b"\0" * 12], "bad_dtype"),
        ([header(op="recognize", shape=[1, 1, 3]), b"abc"], "bad_dtype"),
        ([header(op="recognize", dtype="uint8", shape=[2, 2, 3]), b"abc"], "bad_shape"),
        ([header(op="recognize", dtype="uint8", shape=[0, 1, 3]), b""], "bad_shape"),
        ([header(op="recognize", dtype="uint8", shape=[-1, -3, 3]), b"abc"], "bad_shape"),
        ([header(op="recognize", dtype="uint8", shape=[1, 1, 2]), b"ab"], "bad_shape"),
        ([header(op="recognize", dtype="uint8", shape=[1, 1, 3, 1]), b"abc"], "bad_shape"),
        ([header(op="recognize", dtype="uint8", shape="1x1"), b"abc"], "bad_shape"),
        ([header(op="recognize", dtype="uint8", shape=[1.0, 1, 3]), b"abc"], "bad_shape"),
        ([header(op="recognize", dtype="uint8", shape=[True, True, 3]), b"abc"], "bad_shape"),
        ([header(op="recognize", dtype="uint8", shape=[100000, 100000, 3]), b"abc"], "too_large"),
        ([header(op="recognize", dtype="uint8", shape=[10**30, 10**30, 3]), b"abc"], "too_large"),
        ([header(op="recognize", dtype="uint8", shape=[1, 1, 3], tolerance="0.6"), b"abc"], "bad_option"),
        ([header(op="recognize", dtype="uint8", shape=[1, 1, 3], tolerance=-1), b"abc"], "bad_option"),
        ([header(op="recognize", dtype="uint8", shape=[1, 1, 3], annotate="yes"), b"abc"], "bad_option"),
        ([header(op="recognize", dtype="uint8", shape=[1, 1, 3], colour="red"), b"abc"], "bad_option"),
        ([header(op="recognize", dtype="uint8", shape=[1, 1, 3], track=[{"box": [1, 2], "name": "x"}]), b"abc"],
         "bad_option"),
        ([header(op="recognize", dtype="uint8", shape=[1, 1, 3], track="all"), b"abc"], "bad_option"),
        ([header(op="recognize", dtype="uint8", shape=[1, 1, 3],
                 track=[{"box": [1, 2, 3, 4], "name": "mallory", "distance": 0.1}]), b"abc"], "bad_option"),
        ([header(op="recognize", dtype="uint8", shape=[1, 1, 3], track=[7]), b"abc"], "bad_option"),
        ([header(op="recognize", dtype="uint8", shape=[1, 1, 3], track=[None]), b"abc"], "bad_option"),
        ([header(op="recognize", dtype="uint8", shape=[1, 1, 3], track=["t"] * 33), b"abc"], "bad_option"),
        ([header(op="recognize", dtype="uint8", shape=[1, 1, 3], track=["t" * 1025]), b"abc"], "bad_option"),
        ([header(op="enroll", dtype="uint8", shape=[1, 1, 3]), b"abc"], "bad_option"),
        ([header(op="remove")], "bad_option"),
    ],
)
def test_malformed_requests_are_refused_with_a_code(frames, code):
    assert refused(frames).code == code


def test_track_takes_up_to_32_strings_of_up_to_1024_characters_whatever_they_hold():
    frames = protocol.pack_request("recognize", np.zeros((1, 1, 3), dtype=np.uint8), track=["t" * 1024] * 32)
    assert parse_request(frames).options["track"] == ["t" * 1024] * 32  # the service verifies them


def test_nan_tolerance_is_refused():
    assert refused([b'{"op": "recognize", "dtype": "uint8", "shape": [1, 1, 3], "tolerance": NaN}', b"abc"]).code == "bad_option"


def test_pixel_limit_is_configurable():
    frames = protocol.pack_request("recognize", np.zeros((10, 10, 3), dtype=np.uint8))
    assert refused(frames, Limits(max_pixels=99)).code == "too_large"
    assert Limits(max_pixels=99).max_frame_bytes >= 99 * 4


def test_replies_unpack_to_body_and_image():
    image = np.full((3, 4, 3), 7, dtype=np.uint8)
    body, back = protocol.unpack_reply(protocol.pack_reply({"faces": []}, image))
    assert body["ok"] is True and body["image"] == {"dtype": "uint8", "shape": [3, 4, 3], "encoding": "raw"}
    np.testing.assert_array_equal(back, image)
    body, back = protocol.unpack_reply(protocol.pack_error("bad_shape", "why"))
    assert body == {"ok": False, "error": {"code": "bad_shape", "message": "why"}} and back is None
