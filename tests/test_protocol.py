"""Unit tests of frame validation: every malformed request is refused with a clear code."""

import json
import struct
import zlib

import numpy as np
import pytest

from facewire.faces import images
from facewire.wire import limits, protocol
from facewire.wire.limits import Limits
from facewire.wire.protocol import ProtocolError, parse_request


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
    assert request.op == "recognize" and request.framing == "facewire"
    assert request.options == protocol.RecognizeOptions(tolerance=0.5)
    np.testing.assert_array_equal(request.image, image)


@pytest.mark.parametrize("shape", [(4, 5), (4, 5, 1), (4, 5, 3), (4, 5, 4)])
def test_grey_bgr_and_bgra_layouts_are_accepted(shape):
    image = np.zeros(shape, dtype=np.uint8)
    assert parse_request(protocol.pack_request("recognize", image)).image.shape == shape


def test_classic_send_array_pair_is_recognised():
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    request = parse_request(protocol.pack_classic(image))
    assert request.op == "recognize" and request.framing == "classic"


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
    assert parse_request(frames).options.track == ("t" * 1024,) * 32  # the service verifies them


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


# --- limits at their exact edges --------------------------------------------------------------------

def recognize_header(**fields) -> bytes:
    return header(op="recognize", dtype="uint8", shape=[1, 1, 3], **fields)


@pytest.mark.parametrize("tolerance", [0, 0.0, 0.6, 1, 2, 2.0])
def test_tolerances_from_0_to_2_inclusive_are_accepted(tolerance):
    assert parse_request([recognize_header(tolerance=tolerance), b"abc"]).options.tolerance == tolerance


@pytest.mark.parametrize("tolerance", [2.000001, 3, -0.000001, True, False, None, [0.5], {"t": 1}, 1e400])
def test_tolerances_outside_0_to_2_or_not_numbers_are_refused(tolerance):
    frames = [json.dumps({"op": "recognize", "dtype": "uint8", "shape": [1, 1, 3],
                          "tolerance": tolerance}).replace("Infinity", "1e400").encode(), b"abc"]
    if tolerance is None:
        assert parse_request(frames).options.tolerance is None  # null: the server's own tolerance
        return
    error = refused(frames)
    assert (error.code, error.message) == ("bad_option", "tolerance must be a number from 0 to 2")


def test_the_header_may_be_exactly_64_kib_and_no_more():
    base = header(op="ping", pad="")
    exact = base[:-2] + b" " * (limits.MAX_HEADER_BYTES - len(base)) + base[-2:]
    assert len(exact) == limits.MAX_HEADER_BYTES
    with pytest.raises(ProtocolError) as error:  # accepted as a header: refused only for its unknown option
        parse_request([exact])
    assert error.value.code == "bad_option"
    over = refused([exact[:-1] + b" }"])
    assert (over.code, over.message) == ("too_large", f"header frame is {limits.MAX_HEADER_BYTES + 1} bytes; "
                                                      f"limit {limits.MAX_HEADER_BYTES}")


def test_the_pixel_limit_is_inclusive():
    frames = protocol.pack_request("recognize", np.zeros((10, 12, 3), dtype=np.uint8))
    assert parse_request(frames, Limits(max_pixels=120)).image.shape == (10, 12, 3)
    error = refused(frames, Limits(max_pixels=119))
    assert error.message == "image of 10x12 pixels exceeds the limit of 119"  # height x width


def test_the_frame_cap_fits_the_largest_image_and_its_header():
    assert Limits(max_pixels=1000).max_frame_bytes == 1000 * 4 + limits.MAX_HEADER_BYTES
    assert Limits().max_pixels == limits.DEFAULT_MAX_PIXELS == 40_000_000


def test_compressed_images_are_checked_against_the_pixel_limit_before_decoding():
    image = np.zeros((10, 10, 3), dtype=np.uint8)
    for encoding in ("png", "jpeg"):
        frames = protocol.pack_request("recognize", image, encoding)
        assert parse_request(frames, Limits(max_pixels=100)).image.shape == (10, 10, 3)
        error = refused(frames, Limits(max_pixels=99))
        assert (error.code, error.message) == ("too_large", f"{encoding} image of 10x10 pixels exceeds the limit of 99")



def png_declaring(width: int, height: int) -> bytes:
    """A PNG of only its header chunks: the size it declares, and no pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + chunk(
        b"IEND", b"")


def test_a_compressed_image_declaring_an_enormous_size_is_too_large_even_without_a_pixel_limit():
    """A decompression bomb is refused from its header, as too large (not as a broken image)."""
    frames = [header(op="recognize", encoding="png"), png_declaring(100_000, 100_000)]
    error = refused(frames, Limits(max_pixels=2**62))
    assert (error.code, error.message) == ("too_large", "png image declares an enormous size")
    truncated = refused([header(op="recognize", encoding="png"), png_declaring(20, 10)])
    assert (truncated.code, truncated.message) == ("bad_image", "png image is corrupt or truncated")

# --- ids --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("request_id", ["", "a" * 128, 0, -1, 2**63 - 1, -(2**63 - 1), "Zoë"])
def test_valid_ids_are_kept(request_id):
    assert parse_request([header(op="ping", id=request_id)]).request_id == request_id


@pytest.mark.parametrize("request_id", ["a" * 129, 2**63, -(2**63), True, 1.5, [1], {"a": 1}])
def test_invalid_ids_are_refused_and_not_echoed(request_id):
    error = refused([header(op="ping", id=request_id)])
    assert error.code == "bad_option" and error.request_id is None
    assert error.message == "id must be a string of at most 128 characters or an integer"


def test_a_refused_request_still_carries_its_valid_id():
    assert refused([header(op="explode", id="a7")]).request_id == "a7"
    assert refused([header(op="recognize", dtype="uint8", shape=[1, 1, 3], id=7), b"ab"]).request_id == 7
    assert refused([header(op="ping", id=None), b"x"]).request_id is None
    assert parse_request([header(op="ping")]).request_id is None


# --- the other ops and encodings ----------------------------------------------------------------------

def test_gallery_ops_take_their_options():
    assert parse_request([header(op="list")]).options == protocol.NoOptions()
    assert parse_request([header(op="reload")]).op == "reload"
    remove = parse_request([header(op="remove", name="ann", id=1)])
    assert (remove.op, remove.options, remove.image, remove.request_id) == ("remove", protocol.NameOptions("ann"), None, 1)
    image = np.zeros((2, 2, 3), dtype=np.uint8)
    enroll = parse_request(protocol.pack_request("enroll", image, "png", name="Zoë"))
    assert enroll.op == "enroll" and enroll.options == protocol.EnrolOptions("Zoë", "png")
    np.testing.assert_array_equal(enroll.image, image)


def test_compressed_requests_decode_to_the_image():
    image = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    for encoding in ("png", "jpeg"):
        frames = protocol.pack_request("recognize", image, encoding, tolerance=0.5)
        assert json.loads(frames[0]) == {"op": "recognize", "encoding": encoding, "tolerance": 0.5}
        request = parse_request(frames)
        assert request.encoding == encoding and request.image.shape == (4, 5, 3)
    np.testing.assert_array_equal(parse_request(protocol.pack_request("recognize", image, "png")).image, image)
    assert parse_request(protocol.pack_request("recognize", image)).encoding == "raw"


def test_raw_requests_say_dtype_and_shape():
    frames = protocol.pack_request("recognize", np.zeros((2, 3), dtype=np.uint8), annotate=False)
    assert json.loads(frames[0]) == {"op": "recognize", "dtype": "uint8", "shape": [2, 3], "annotate": False}
    assert bytes(frames[1]) == bytes(6)
    assert protocol.pack_request("ping", id=3) == [b'{"op": "ping", "id": 3}']


def test_non_contiguous_images_are_sent_whole():
    image = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)[:, ::2]
    request = parse_request(protocol.pack_request("recognize", image))
    np.testing.assert_array_equal(request.image, image)


# --- what each refusal says ---------------------------------------------------------------------------

@pytest.mark.parametrize("frames, code, message", [
    ([], "bad_request", "empty message"),
    ([b"{"], "bad_header", "first frame is not valid UTF-8 JSON"),
    ([b"[]"], "bad_header", "header must be a JSON object"),
    ([header(op="explode")], "unknown_op",
     "unknown op 'explode'; expected one of recognize, enroll, ping, list, reload, remove, photo, verify"),
    ([header()], "unknown_op", "unknown op None; expected one of recognize, enroll, ping, list, reload, remove, photo, verify"),
    ([header(dtype="uint8", shape=[1, 1, 3], tolerance=0.5), b"abc"], "unknown_op",  # not a bare send_array
     "unknown op None; expected one of recognize, enroll, ping, list, reload, remove, photo, verify"),
    ([header(op="ping"), b"x"], "bad_request", "ping takes 1 frame (the JSON header); got 2 frames"),
    ([recognize_header()], "bad_request", "recognize takes 2 frames: JSON header, then the image; got 1 frames"),
    ([header(op="ping", colour="red")], "bad_option", "unknown option(s) ['colour'] for ping; allowed: []"),
    ([recognize_header(colour="red", size=1), b"abc"], "bad_option",
     "unknown option(s) ['colour', 'size'] for recognize; allowed: ['annotate', 'encoding', 'scan', 'tolerance', 'track']"),
    ([header(op="remove", name=7)], "bad_option", 'remove needs a "name" string'),
    ([recognize_header(encoding="gif"), b"abc"], "bad_option", "encoding must be one of raw, jpeg, png"),
    ([recognize_header(annotate=1), b"abc"], "bad_option", "annotate must be true or false"),
    ([recognize_header(track="t"), b"abc"], "bad_option", "track must be a list of at most 32 strings of at most "
                                                          "1024 characters: the track tokens of earlier replies"),
    ([header(op="recognize", encoding="png", shape=[1, 1]), b"x"], "bad_option",
     "a png image carries its own size: drop dtype and shape"),
    ([header(op="recognize", encoding="jpeg", dtype="uint8"), b"x"], "bad_option",
     "a jpeg image carries its own size: drop dtype and shape"),
    ([header(op="recognize", encoding="png"), b"not a png"], "bad_image", "not a readable png image"),
    ([header(op="recognize", dtype="uint16", shape=[1, 1, 3]), b"abcdef"], "bad_dtype",
     "dtype must be 'uint8', got 'uint16'"),
    ([header(op="recognize", shape=[1, 1, 3]), b"abc"], "bad_dtype", "dtype must be 'uint8', got None"),
    ([header(op="recognize", dtype="uint8", shape=[1]), b"a"], "bad_shape",
     "shape must be [height, width] or [height, width, channels]"),
    ([header(op="recognize", dtype="uint8", shape=[1, 1, 1, 1]), b"a"], "bad_shape",
     "shape must be [height, width] or [height, width, channels]"),
    ([header(op="recognize", dtype="uint8", shape=[1, 1, 2]), b"ab"], "bad_shape",
     "channels must be 1, 3 (BGR) or 4 (BGRA), got 2"),
    ([header(op="recognize", dtype="uint8", shape=[0, 5]), b""], "bad_shape",
     "height and width must be positive, got [0, 5]"),
    ([header(op="recognize", dtype="uint8", shape=[5, 0, 3]), b""], "bad_shape",
     "height and width must be positive, got [5, 0]"),
    ([header(op="recognize", dtype="uint8", shape=[2, 2, 3]), b"abc"], "bad_shape",
     "shape [2, 2, 3] needs 12 bytes, pixel frame has 3"),
    ([header(op="recognize", dtype="uint8", shape=[2, 2]), b"abcde"], "bad_shape",
     "shape [2, 2] needs 4 bytes, pixel frame has 5"),
])
def test_each_refusal_says_what_is_wrong(frames, code, message):
    error = refused(frames)
    assert (error.code, error.message, str(error)) == (code, message, message)


def test_a_truncated_compressed_image_is_a_bad_image():
    data = images.encode_compressed(np.full((20, 20, 3), 90, np.uint8), "png")
    error = refused([header(op="recognize", encoding="png"), data[:-30]])
    assert (error.code, error.message) == ("bad_image", "png image is corrupt or truncated")


# --- replies ----------------------------------------------------------------------------------------

def test_a_reply_can_carry_a_compressed_image():
    image = np.full((6, 8, 3), 77, dtype=np.uint8)
    frames = protocol.pack_reply({"faces": []}, image, "png")
    body, back = protocol.unpack_reply(frames)
    assert body == {"ok": True, "faces": [], "image": {"dtype": "uint8", "shape": [6, 8, 3], "encoding": "png"}}
    np.testing.assert_array_equal(back, image)
    body, back = protocol.unpack_reply(protocol.pack_reply({"faces": []}, image, "jpeg"))
    assert body["image"]["encoding"] == "jpeg" and back.shape == (6, 8, 3)
    assert protocol.unpack_reply(protocol.pack_reply({"op": "ping", "names": ["Zoë"]})) == (
        {"ok": True, "op": "ping", "names": ["Zoë"]}, None)
    assert protocol.pack_reply({"name": "Zoë"})[0] == '{"ok": true, "name": "Zoë"}'.encode()  # UTF-8, not \\u


def test_a_reply_image_may_be_larger_than_a_request_could_be():
    header_only = {"ok": True, "image": {"dtype": "uint8", "shape": [1, 2]}}
    body, image = protocol.unpack_reply([json.dumps(header_only).encode(), b"\x01\x02"])
    assert image.tolist() == [[1, 2]]  # no encoding said: raw
    assert limits.TRUSTED_REPLY_LIMITS.max_pixels > limits.DEFAULT_MAX_PIXELS


def test_an_error_reply_carries_its_id_when_it_has_one():
    assert protocol.pack_error("bad_shape", "why", 4) == [
        b'{"ok": false, "error": {"code": "bad_shape", "message": "why"}, "id": 4}']
    assert json.loads(protocol.pack_error("x", "y", 0)[0])["id"] == 0
    assert "id" not in json.loads(protocol.pack_error("x", "y")[0])


@pytest.mark.parametrize("frames, message", [
    ([], "reply has no 'ok' field"),
    ([b'{"faces": []}'], "reply has no 'ok' field"),
])
def test_malformed_replies_are_refused(frames, message):
    with pytest.raises(ProtocolError) as error:
        protocol.unpack_reply(frames)
    assert (error.value.code, error.value.message) == ("bad_reply", message)


def test_a_reply_whose_image_is_missing_or_broken():
    described = json.dumps({"ok": True, "image": {"dtype": "uint8", "shape": [2, 2], "encoding": "png"}}).encode()
    assert protocol.unpack_reply([described]) == ({"ok": True, "image": {"dtype": "uint8", "shape": [2, 2],
                                                                         "encoding": "png"}}, None)
    with pytest.raises(ProtocolError) as error:
        protocol.unpack_reply([described, b"not a png"])
    assert (error.value.code, error.value.message) == ("bad_reply", "not a readable png image")
    with pytest.raises(ProtocolError) as error:
        protocol.unpack_reply([b'{"ok": true, "image": {"dtype": "uint8", "shape": [2, 2]}}', b"abc"])
    assert error.value.code == "bad_shape"


def test_classic_replies_are_dtype_shape_and_pixels():
    image = np.arange(6, dtype=np.uint8).reshape(1, 2, 3)
    frames = protocol.pack_classic(image)
    assert json.loads(frames[0]) == {"dtype": "uint8", "shape": [1, 2, 3]} and bytes(frames[1]) == image.tobytes()


def test_a_protocol_error_carries_its_code_message_and_request_id():
    error = protocol.BadShape("shape must be a list", "r-9")
    assert (error.code, error.message, error.request_id, str(error)) == ("bad_shape", "shape must be a list", "r-9",
                                                                         "shape must be a list")
    assert protocol.BadRequest("empty message").request_id is None


def test_each_error_type_carries_its_own_code():
    kinds = [protocol.BadRequest, protocol.BadHeader, protocol.UnknownOp, protocol.BadOption, protocol.BadDtype,
             protocol.BadShape, protocol.TooLarge, protocol.BadImage, protocol.BadReply]
    assert [kind("x").code for kind in kinds] == ["bad_request", "bad_header", "unknown_op", "bad_option", "bad_dtype",
                                                  "bad_shape", "too_large", "bad_image", "bad_reply"]
    assert all(issubclass(kind, ProtocolError) for kind in kinds)


def test_faces_round_trip_through_json_and_a_malformed_face_is_a_bad_reply():
    face = protocol.FaceResult("ann", 0.31, 0.742, (1, 9, 8, 2), True, "tok")
    assert protocol.FaceResult.from_json(json.loads(json.dumps(face.to_json()))) == face
    assert face.to_json()["box"] == [1, 9, 8, 2]
    for broken in ({"name": "ann"}, None, {**face.to_json(), "box": [1, 2]}, "ann"):
        with pytest.raises(protocol.BadReply):
            protocol.FaceResult.from_json(broken)


def test_a_faces_score_and_landmarks_round_trip_through_json():
    landmarks = ((10.5, 20.0), (30.0, 20.5), (20.0, 30.0), (12.5, 40.0), (28.0, 40.5))
    face = protocol.FaceResult("ann", 0.31, 0.742, (5, 40, 50, 2), False, "tok", 0.9987, landmarks)
    plain = face.to_json()
    assert plain["score"] == 0.9987 and plain["landmarks"] == [[10.5, 20.0], [30.0, 20.5], [20.0, 30.0],
                                                                [12.5, 40.0], [28.0, 40.5]]
    assert protocol.FaceResult.from_json(json.loads(json.dumps(plain))) == face
    integral = protocol.FaceResult.from_json({**plain, "landmarks": [[10, 20]] * 5})  # integers are points too
    assert integral.landmarks == ((10.0, 20.0),) * 5
    assert all(isinstance(v, float) for point in integral.landmarks for v in point)
    undetected = protocol.FaceResult("ann", 0.31, 0.742, (5, 40, 50, 2))  # dlib's detectors give no landmarks
    assert undetected.score is None and undetected.to_json()["landmarks"] == []
    assert protocol.FaceResult.from_json(json.loads(json.dumps(undetected.to_json()))) == undetected
    for landmarks in ([[1, 2, 3]], [[1]], "ab", [["x", "y"]], None, 5):
        with pytest.raises(protocol.BadReply):
            protocol.FaceResult.from_json({**plain, "landmarks": landmarks})


def test_replies_are_strict_json_a_nan_is_an_error_not_sent():
    with pytest.raises(ValueError):
        protocol.pack_reply({"distance": float("nan")})


def test_a_face_without_tracking_fields_is_untracked_and_has_no_token():
    face = protocol.FaceResult.from_json({"name": "ann", "distance": 0.3, "confidence": 0.75, "box": [1, 2, 3, 4]})
    assert face == protocol.FaceResult("ann", 0.3, 0.75, (1, 2, 3, 4), False, None)
    assert face.tracked is False and face.score is None and face.landmarks == ()  # a reply from before scores


def test_scan_is_full_or_tracked():
    image = np.zeros((2, 2, 3), np.uint8)
    assert parse_request(protocol.pack_request("recognize", image)).options.scan == "full"
    assert parse_request(protocol.pack_request("recognize", image, scan="tracked")).options.scan == "tracked"
    error = refused(protocol.pack_request("recognize", image, scan="sideways"))
    assert (error.code, error.message) == ("bad_option", "scan must be one of full, tracked")


def imagezmq_image(msg, image: np.ndarray, *more: bytes) -> list[bytes]:
    """What imagezmq's send_image puts on the wire (as JSON here), with `more` frames after it."""
    return [json.dumps({"msg": msg, "dtype": str(image.dtype), "shape": list(image.shape)}).encode(),
            image.tobytes(), *more]


def test_an_imagezmq_frame_is_recognised_for_its_camera_without_an_annotated_image():
    image = np.zeros((4, 6, 3), np.uint8)
    request = parse_request(imagezmq_image("porch", image))
    assert (request.op, request.framing, request.camera) == ("recognize", "imagezmq", "porch")
    assert request.options.annotate is False and request.image.shape == (4, 6, 3)
    jpeg = images.encode_compressed(np.full((8, 8, 3), 128, np.uint8), "jpeg")
    sent = parse_request([json.dumps({"msg": "porch"}).encode(), jpeg])
    assert (sent.framing, sent.options.annotate, sent.options.encoding) == ("imagezmq", False, "jpeg")


def test_an_imagezmq_camera_name_may_be_as_long_as_the_limit_and_no_longer():
    image = np.zeros((2, 2, 3), np.uint8)
    assert parse_request(imagezmq_image("c" * protocol.MAX_CAMERA_LENGTH, image)).camera == "c" * 256
    error = refused(imagezmq_image("c" * (protocol.MAX_CAMERA_LENGTH + 1), image))
    assert error.code == "bad_option"
    assert str(error) == "msg must be the camera's name: printable text of at most 256 characters"
    error = refused(imagezmq_image("porch", image, b"extra"))
    assert error.code == "bad_request" and str(error).startswith("an imagezmq message takes 2 frames: JSON, then the image")


# --- verify ---------------------------------------------------------------------------------------------

def test_verify_carries_two_images_raw_with_shape2_or_compressed():
    first, second = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3), np.full((4, 5), 9, np.uint8)
    frames = protocol.pack_verify(first, second, tolerance=0.5, id=4)
    assert json.loads(frames[0]) == {"op": "verify", "dtype": "uint8", "shape": [2, 3, 3], "shape2": [4, 5],
                                     "tolerance": 0.5, "id": 4} and len(frames) == 3
    request = parse_request(frames)
    assert (request.op, request.options, request.request_id) == ("verify", protocol.VerifyOptions(tolerance=0.5), 4)
    np.testing.assert_array_equal(request.image, first)
    np.testing.assert_array_equal(request.image2, second)
    second = np.full((4, 5, 3), 9, np.uint8)
    frames = protocol.pack_verify(first, second, "png")
    assert json.loads(frames[0]) == {"op": "verify", "encoding": "png"}
    request = parse_request(frames)
    np.testing.assert_array_equal(request.image, first)
    np.testing.assert_array_equal(request.image2, second)


def test_verify_against_a_name_carries_one_image():
    image = np.zeros((2, 2, 3), np.uint8)
    frames = protocol.pack_verify(image, name="Zoë")
    assert json.loads(frames[0]) == {"op": "verify", "dtype": "uint8", "shape": [2, 2, 3], "name": "Zoë"}
    request = parse_request(frames)
    assert request.options == protocol.VerifyOptions(name="Zoë") and request.image2 is None
    jpeg = parse_request(protocol.pack_verify(image, None, "jpeg", name="ann"))
    assert jpeg.options == protocol.VerifyOptions(name="ann", encoding="jpeg") and jpeg.image.shape == (2, 2, 3)
    unnamed = parse_request([header(op="verify", encoding="png", name=None), *protocol.pack_verify(
        image, image, "png")[1:]])  # a null name is no name: two images
    assert unnamed.options.name is None and unnamed.image2.shape == (2, 2, 3)


def verify_header(**fields) -> bytes:
    return header(op="verify", dtype="uint8", shape=[1, 1, 3], **fields)


PNG = images.encode_compressed(np.zeros((2, 2, 3), np.uint8), "png")


@pytest.mark.parametrize("frames, code, message", [
    ([header(op="verify")], "bad_request",
     'verify takes 3 frames: JSON header, then two images (or 2 frames with a "name"); got 1 frames'),
    ([verify_header(shape2=[1, 1, 3]), b"abc"], "bad_request",
     'verify takes 3 frames: JSON header, then two images (or 2 frames with a "name"); got 2 frames'),
    ([verify_header(name="ann"), b"abc", b"abc"], "bad_request",
     'verify with a "name" takes 2 frames: JSON header, then the image; got 3 frames'),
    ([verify_header(name=7), b"abc"], "bad_option", 'verify needs a "name" string'),
    ([verify_header(name="ann", shape2=[1, 1, 3]), b"abc"], "bad_option",
     "shape2 describes a second raw image: drop it"),
    ([header(op="verify", encoding="png", shape2=[2, 2, 3]), PNG, PNG], "bad_option",
     "shape2 describes a second raw image: drop it"),
    ([verify_header(), b"abc", b"abc"], "bad_shape",
     'image 2: a second raw image needs "shape2", its [height, width] or [height, width, channels]'),
    ([verify_header(shape2=[2, 2, 3]), b"abc", b"abc"], "bad_shape",
     "image 2: shape [2, 2, 3] needs 12 bytes, pixel frame has 3"),
    ([verify_header(shape2="2x2"), b"abc", b"abc"], "bad_shape",
     "image 2: shape must be [height, width] or [height, width, channels]"),
    ([header(op="verify", dtype="uint8", shape=[2, 2, 3], shape2=[1, 1, 3]), b"abc", b"abc"], "bad_shape",
     "image 1: shape [2, 2, 3] needs 12 bytes, pixel frame has 3"),
    ([header(op="verify", dtype="float32", shape=[1, 1, 3], shape2=[1, 1, 3]), b"abc", b"abc"], "bad_dtype",
     "image 1: dtype must be 'uint8', got 'float32'"),
    ([header(op="verify", dtype="uint8", shape=[1, 1, 3], shape2=[10, 10, 3]), b"abc", bytes(300)], "too_large",
     "image 2: image of 10x10 pixels exceeds the limit of 99"),
    ([header(op="verify", encoding="png"), PNG, b"not a png"], "bad_image", "image 2: not a readable png image"),
    ([header(op="verify", encoding="jpeg", name="ann"), b"not a jpeg"], "bad_image",
     "image 1: not a readable jpeg image"),
    ([header(op="verify", encoding="png", shape=[2, 2, 3]), PNG, PNG], "bad_option",
     "image 1: a png image carries its own size: drop dtype and shape"),
    ([verify_header(name="ann", tolerance=2.5), b"abc"], "bad_option", "tolerance must be a number from 0 to 2"),
    ([verify_header(name="ann", annotate=True), b"abc"], "bad_option",
     "unknown option(s) ['annotate'] for verify; allowed: ['encoding', 'name', 'tolerance']"),
    ([recognize_header(shape2=[1, 1, 3]), b"abc"], "bad_option",
     "unknown option(s) ['shape2'] for recognize; allowed: ['annotate', 'encoding', 'scan', 'tolerance', 'track']"),
])
def test_each_verify_refusal_says_what_is_wrong_and_which_image(frames, code, message):
    error = refused(frames, Limits(max_pixels=99))
    assert (error.code, error.message) == (code, message)


def test_a_refused_verify_still_carries_its_id():
    assert refused([header(op="verify", id="v1", name="ann")]).request_id == "v1"
