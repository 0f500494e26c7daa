"""The wire protocol: multipart frames <-> (header, array), with validation and limits.

Request:  [JSON header, pixels]   header = {"op": "recognize", "dtype": "uint8",
                                            "shape": [h, w] | [h, w, 1|3|4], ...options}
          [JSON header, JPEG/PNG] header = {"op": "recognize", "encoding": "jpeg"|"png", ...}
          [JSON header]           header = {"op": "ping"}
          [JSON header, image, image]  header = {"op": "verify", ...}: a second raw image's shape is "shape2"
Reply:    [JSON body, image?]     body = {"ok": true, ...}  or
          [JSON body]             body = {"ok": false, "error": {"code", "message"}}
Any request may carry an "id" (string or integer), echoed in its reply.
Classic:  a request header with only "dtype" and "shape" (pyzmq's send_array) is
          answered in the same form: [{"dtype", "shape"}, raw pixels].
Nothing here knows about sockets or faces.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from facewire.faces import images
from facewire.wire.limits import CHANNELS, MAX_HEADER_BYTES, TRUSTED_REPLY_LIMITS, Limits

MAX_ID_LENGTH = 128
MAX_TRACKED = 32
MAX_TOKEN_LENGTH = 1024
"""recognize's `track`: at most this many tokens (from earlier replies), each at most this long."""
ENCODINGS = ("raw", "jpeg", "png")
SCANS = ("full", "tracked")
ARRAY_KEYS = {"dtype", "shape"}
MAX_CAMERA_LENGTH = 256
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

Buffer = bytes | bytearray | memoryview


class ProtocolError(Exception):
    """A message refused; each subclass carries its machine-readable `code`, the message is for people."""

    code = "bad_request"

    def __init__(self, message: str, request_id: str | int | None = None):
        super().__init__(message)
        self.message = message
        self.request_id = request_id


class BadRequest(ProtocolError):
    code = "bad_request"


class BadHeader(ProtocolError):
    code = "bad_header"


class UnknownOp(ProtocolError):
    code = "unknown_op"


class BadOption(ProtocolError):
    code = "bad_option"


class BadDtype(ProtocolError):
    code = "bad_dtype"


class BadShape(ProtocolError):
    code = "bad_shape"


class TooLarge(ProtocolError):
    code = "too_large"


class BadImage(ProtocolError):
    code = "bad_image"


class BadReply(ProtocolError):
    code = "bad_reply"


@dataclass(frozen=True)
class RecognizeOptions:
    """recognize: `tolerance` (None: the server's), whether to return the `annotate`d image, the image's
    wire `encoding`, the `track` tokens of the previous frame's faces (checked by the service), and
    what to `scan`: "full", the whole image, or "tracked", only around the faces the tokens vouch for
    (a video between keyframes; with no valid token, the whole image)."""

    tolerance: float | None = None
    annotate: bool = True
    encoding: str = "raw"
    track: tuple[str, ...] = ()
    scan: str = "full"


@dataclass(frozen=True)
class EnrolOptions:
    """enroll: the person's `name` (checked by the gallery), and the photo's wire `encoding`."""

    name: str
    encoding: str = "raw"


@dataclass(frozen=True)
class NameOptions:
    """remove and photo: the person's `name`."""

    name: str


@dataclass(frozen=True)
class NoOptions:
    """ping, list and reload take no options."""


@dataclass(frozen=True)
class VerifyOptions:
    """verify: the `name` of the person the image is compared with (None: a second image follows instead),
    `tolerance` (None: the server's), and the images' wire `encoding`."""

    name: str | None = None
    tolerance: float | None = None
    encoding: str = "raw"


Options = RecognizeOptions | EnrolOptions | NameOptions | NoOptions | VerifyOptions
OPTIONS: dict[str, type] = {"recognize": RecognizeOptions, "enroll": EnrolOptions, "ping": NoOptions,
                            "list": NoOptions, "reload": NoOptions, "remove": NameOptions, "photo": NameOptions,
                            "verify": VerifyOptions}
"""Every op and the options it takes: its header's other fields."""
OPS = tuple(OPTIONS)
IMAGE_OPS = ("recognize", "enroll")
"""Ops whose second frame is their one image (verify, of one or two images, is parsed on its own)."""


@dataclass(frozen=True)
class Request:
    """A validated request. `framing` is how it came, and a reply goes back the same way: "facewire"
    (its own headers), "classic" (pyzmq's send_array pair, {"dtype", "shape"}) or "imagezmq" (a
    sender's {"msg", "dtype", "shape"} before raw pixels, or {"msg"} before a JPEG or PNG);
    `camera` is an imagezmq sender's `msg`; `image2` is verify's second image."""

    op: str
    options: Options
    image: np.ndarray | None = None
    framing: str = "facewire"
    request_id: str | int | None = None
    camera: str | None = None
    image2: np.ndarray | None = None

    @property
    def encoding(self) -> str:
        return getattr(self.options, "encoding", "raw")


@dataclass(frozen=True)
class FaceResult:
    """One face of a recognize reply: its name ("Unknown" when none is near enough), the distance to
    the nearest photo (None for an empty gallery), a confidence in [0, 1], the box (top, right,
    bottom, left), whether its name came from a track token, the token for the next frame, the
    detector's score for the face, its five landmarks as [x, y] (left eye, right eye, nose, left
    and right mouth corner, as seen in the image; none from dlib's detectors), the margin (the next
    person's distance minus the nearest's; None with fewer than two people), the decision that named
    or refused it (facewire.faces.decision), and its quality: {"width", "sharpness", "yaw", "roll"}."""

    name: str
    distance: float | None
    confidence: float
    box: tuple[int, int, int, int]
    tracked: bool = False
    track: str | None = None
    score: float | None = None
    landmarks: tuple[tuple[float, float], ...] = ()
    margin: float | None = None
    decision: str | None = None
    quality: dict[str, float | int | None] | None = None

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "box": list(self.box), "landmarks": [list(p) for p in self.landmarks]}

    @classmethod
    def from_json(cls, face: Any) -> FaceResult:
        """A face of a reply; BadReply if it is not one."""
        try:
            top, right, bottom, left = face["box"]
            landmarks = tuple((float(x), float(y)) for x, y in face.get("landmarks", ()))
            return cls(face["name"], face["distance"], face["confidence"], (top, right, bottom, left),
                       face.get("tracked", False), face.get("track"), face.get("score"), landmarks,
                       face.get("margin"), face.get("decision"), face.get("quality"))
        except (TypeError, KeyError, ValueError):
            raise BadReply(f"not a face: {face!r:.200}") from None


def parse_request(frames: Sequence[Buffer], limits: Limits = Limits()) -> Request:
    """Validate frames into a Request, or raise ProtocolError saying what is wrong."""
    if not frames:
        raise BadRequest("empty message")
    header = _parse_header(frames[0])
    request_id = header.pop("id", None)
    try:
        _check_id(request_id)
        return _parse_op(header, frames, limits, request_id)
    except ProtocolError as exc:
        exc.request_id = request_id if _valid_id(request_id) else None
        raise


def _parse_op(header: dict[str, Any], frames: Sequence[Buffer], limits: Limits,
              request_id: str | int | None) -> Request:
    framing = _framing(header)
    if framing == "imagezmq":
        return _parse_imagezmq(header, frames, limits)
    op = "recognize" if framing == "classic" else header.pop("op", None)
    if op not in OPS:
        raise UnknownOp(f"unknown op {op!r}; expected one of {', '.join(OPS)}")
    if op == "verify":
        return _parse_verify(header, frames, limits, request_id)
    if op not in IMAGE_OPS:
        _expect_frames(frames, 1, f"{op} takes 1 frame (the JSON header)")
        return Request(op, _check_options(op, header), request_id=request_id)
    _expect_frames(frames, 2, f"{op} takes 2 frames: JSON header, then the image")
    options = _check_options(op, {k: v for k, v in header.items() if k not in ARRAY_KEYS})
    return Request(op, options, _image(header, frames[1], options.encoding, limits), framing, request_id)


def _image(header: dict[str, Any], frame: Buffer, encoding: str, limits: Limits) -> np.ndarray:
    """The image of a frame: raw pixels as the header's dtype and shape describe them, or a JPEG or PNG."""
    if encoding == "raw":
        return array_from_frame(header, frame, limits)
    return _decode_frame(header, frame, encoding, limits)


def _parse_verify(header: dict[str, Any], frames: Sequence[Buffer], limits: Limits,
                  request_id: str | int | None) -> Request:
    """verify: the header, then two images (a second raw one described by "shape2"), or one image and a "name"."""
    shape2 = header.pop("shape2", None)
    options = _check_options("verify", {k: v for k, v in header.items() if k not in ARRAY_KEYS})
    if options.name is not None:
        _expect_frames(frames, 2, 'verify with a "name" takes 2 frames: JSON header, then the image')
    else:
        _expect_frames(frames, 3, 'verify takes 3 frames: JSON header, then two images (or 2 frames with a "name")')
    if shape2 is not None and (options.name is not None or options.encoding != "raw"):
        raise BadOption("shape2 describes a second raw image: drop it")
    if shape2 is None and options.name is None and options.encoding == "raw":
        raise BadShape('image 2: a second raw image needs "shape2", its [height, width] or [height, width, channels]')
    image = _numbered_image(1, header, frames[1], options.encoding, limits)
    if options.name is not None:
        return Request("verify", options, image, request_id=request_id)
    second = {} if shape2 is None else {"dtype": header.get("dtype"), "shape": shape2}
    image2 = _numbered_image(2, second, frames[2], options.encoding, limits)
    return Request("verify", options, image, request_id=request_id, image2=image2)


def _numbered_image(number: int, header: dict[str, Any], frame: Buffer, encoding: str, limits: Limits) -> np.ndarray:
    """`_image`, its refusal naming the image ("image 2: ...")."""
    try:
        return _image(header, frame, encoding, limits)
    except ProtocolError as exc:
        raise type(exc)(f"image {number}: {exc.message}") from None


def _framing(header: dict[str, Any]) -> str:
    keys = set(header)
    if "op" in keys:
        return "facewire"
    if keys == ARRAY_KEYS:
        return "classic"
    return "imagezmq" if "msg" in keys and keys <= ARRAY_KEYS | {"msg"} else "facewire"


def _parse_imagezmq(header: dict[str, Any], frames: Sequence[Buffer], limits: Limits) -> Request:
    """An imagezmq sender's frame: send_image (msg, dtype, shape; raw pixels) or send_jpg (msg; a JPEG)."""
    camera = header.pop("msg")
    if not isinstance(camera, str) or len(camera) > MAX_CAMERA_LENGTH or not camera.isprintable():
        raise BadOption(f"msg must be the camera's name: printable text of at most {MAX_CAMERA_LENGTH} characters")
    _expect_frames(frames, 2, "an imagezmq message takes 2 frames: JSON, then the image")
    if ARRAY_KEYS <= set(header):
        options, image = RecognizeOptions(annotate=False), array_from_frame(header, frames[1], limits)
    else:
        encoding = "png" if bytes(frames[1][:len(PNG_SIGNATURE)]) == PNG_SIGNATURE else "jpeg"
        options, image = RecognizeOptions(annotate=False, encoding=encoding), _decode_frame(header, frames[1],
                                                                                            encoding, limits)
    return Request("recognize", options, image, "imagezmq", camera=camera)


def _valid_id(request_id: Any) -> bool:
    if isinstance(request_id, str):
        return len(request_id) <= MAX_ID_LENGTH
    return isinstance(request_id, int) and not isinstance(request_id, bool) and abs(request_id) < 2**63


def _check_id(request_id: Any) -> None:
    if request_id is not None and not _valid_id(request_id):
        raise BadOption(f"id must be a string of at most {MAX_ID_LENGTH} characters or an integer")


def _decode_frame(header: dict[str, Any], frame: Buffer, encoding: str, limits: Limits) -> np.ndarray:
    if ARRAY_KEYS & set(header):
        raise BadOption(f"a {encoding} image carries its own size: drop dtype and shape")
    try:
        return images.decode_compressed(bytes(frame), encoding, limits.max_pixels)
    except images.ImageTooLarge as exc:
        raise TooLarge(str(exc)) from None
    except images.ImageError as exc:
        raise BadImage(str(exc)) from None


def _parse_header(frame: Buffer) -> dict[str, Any]:
    size = memoryview(frame).nbytes
    if size > MAX_HEADER_BYTES:
        raise TooLarge(f"header frame is {size} bytes; limit {MAX_HEADER_BYTES}")
    try:
        header = json.loads(bytes(frame))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadHeader("first frame is not valid UTF-8 JSON") from None
    if not isinstance(header, dict):
        raise BadHeader("header must be a JSON object")
    return header


def _expect_frames(frames: Sequence[Buffer], count: int, message: str) -> None:
    if len(frames) != count:
        raise BadRequest(f"{message}; got {len(frames)} frames")


def _check_options(op: str, options: dict[str, Any]) -> Options:
    kind = OPTIONS[op]
    allowed = {field.name for field in dataclasses.fields(kind)}
    unknown = set(options) - allowed
    if unknown:
        raise BadOption(f"unknown option(s) {sorted(unknown)} for {op}; allowed: {sorted(allowed)}")
    name = options.get("name")
    if "name" in allowed and not isinstance(name, str) and (op != "verify" or name is not None):  # verify's is optional
        raise BadOption(f"{op} needs a \"name\" string")
    if options.get("encoding", "raw") not in ENCODINGS:
        raise BadOption(f"encoding must be one of {', '.join(ENCODINGS)}")
    tolerance = options.get("tolerance")
    if tolerance is not None and not (_is_number(tolerance) and 0 <= tolerance <= 2):
        raise BadOption("tolerance must be a number from 0 to 2")
    if options.get("scan", "full") not in SCANS:
        raise BadOption(f"scan must be one of {', '.join(SCANS)}")
    if not isinstance(options.get("annotate", True), bool):
        raise BadOption("annotate must be true or false")
    if "track" in options and not _valid_track(options["track"]):
        raise BadOption(f"track must be a list of at most {MAX_TRACKED} strings of at most "
                        f"{MAX_TOKEN_LENGTH} characters: the track tokens of earlier replies")
    if "track" in options:
        options["track"] = tuple(options["track"])
    return kind(**{name: value for name, value in options.items() if value is not None})


def _valid_track(track: Any) -> bool:
    """The tokens of the previous frame's faces, as a video client sends them back (checked by the service)."""
    return isinstance(track, list) and len(track) <= MAX_TRACKED and all(
        isinstance(token, str) and len(token) <= MAX_TOKEN_LENGTH for token in track)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def array_from_frame(header: dict[str, Any], frame: Buffer, limits: Limits) -> np.ndarray:
    """The image a header describes, checked against the pixel frame and the limits."""
    if header.get("dtype") != "uint8":
        raise BadDtype(f"dtype must be 'uint8', got {header.get('dtype')!r}")
    shape = header.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) not in (2, 3)
        or not all(isinstance(n, int) and not isinstance(n, bool) for n in shape)
    ):
        raise BadShape("shape must be [height, width] or [height, width, channels]")
    if len(shape) == 3 and shape[2] not in CHANNELS:
        raise BadShape(f"channels must be 1, 3 (BGR) or 4 (BGRA), got {shape[2]}")
    if shape[0] < 1 or shape[1] < 1:
        raise BadShape(f"height and width must be positive, got {shape[:2]}")
    if shape[0] * shape[1] > limits.max_pixels:
        raise TooLarge(f"image of {shape[0]}x{shape[1]} pixels exceeds the limit of {limits.max_pixels}"
        )
    expected, actual = math.prod(shape), memoryview(frame).nbytes
    if actual != expected:
        raise BadShape(f"shape {shape} needs {expected} bytes, pixel frame has {actual}")
    return np.frombuffer(frame, dtype=np.uint8).reshape(shape)


def array_header(image: np.ndarray) -> dict[str, Any]:
    return {"dtype": str(image.dtype), "shape": list(image.shape)}


def raw_bytes(image: np.ndarray) -> memoryview:
    """The array's pixels as a flat byte view (no copy when already contiguous)."""
    return np.ascontiguousarray(image).reshape(-1).view(np.uint8).data


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, allow_nan=False, ensure_ascii=False).encode()


def pack_request(op: str, image: np.ndarray | None = None, encoding: str = "raw", **options: Any) -> list[Any]:
    """Client side: frames for a request (`image` for recognize, sent raw or compressed)."""
    if image is None:
        return [_json({"op": op, **options})]
    if encoding == "raw":
        return [_json({"op": op, **array_header(image), **options}), raw_bytes(image)]
    return [_json({"op": op, "encoding": encoding, **options}), images.encode_compressed(image, encoding)]


def pack_verify(image: np.ndarray, image2: np.ndarray | None = None, encoding: str = "raw",
                **options: Any) -> list[Any]:
    """Client side: frames for verify: `image` and `image2`, or `image` and a `name` option."""
    if image2 is None:
        return pack_request("verify", image, encoding, **options)
    if encoding == "raw":
        return [*pack_request("verify", image, encoding, shape2=list(image2.shape), **options), raw_bytes(image2)]
    return [*pack_request("verify", image, encoding, **options), images.encode_compressed(image2, encoding)]


def pack_imagezmq(camera: str, body: dict[str, Any]) -> list[bytes]:
    """The one frame an imagezmq sender reads: JSON with its `msg` and the reply's body."""
    return [_json({"ok": True, "msg": camera, **body})]


def pack_classic(image: np.ndarray) -> list[Any]:
    """pyzmq's send_array framing: JSON dtype/shape, then the raw buffer."""
    return [_json(array_header(image)), raw_bytes(image)]


def pack_reply(body: dict[str, Any], image: np.ndarray | None = None, encoding: str = "raw") -> list[Any]:
    """A success reply; the image (if any) follows the JSON body, described under "image"."""
    if image is None:
        return [_json({"ok": True, **body})]
    described = {**array_header(image), "encoding": encoding}
    data = raw_bytes(image) if encoding == "raw" else images.encode_compressed(image, encoding)
    return [_json({"ok": True, **body, "image": described}), data]


def pack_error(code: str, message: str, request_id: str | int | None = None) -> list[bytes]:
    body: dict[str, Any] = {"ok": False, "error": {"code": code, "message": message}}
    if request_id is not None:
        body["id"] = request_id
    return [_json(body)]


def unpack_reply(frames: Sequence[Buffer]) -> tuple[dict[str, Any], np.ndarray | None]:
    """Client side: (body, image or None); raises ProtocolError on a malformed reply."""
    body = _parse_header(frames[0]) if frames else {}
    if "ok" not in body:
        raise BadReply("reply has no 'ok' field")
    if "image" not in body or len(frames) < 2:
        return body, None
    encoding = body["image"].get("encoding", "raw")
    if encoding == "raw":
        return body, array_from_frame(body["image"], frames[1], TRUSTED_REPLY_LIMITS)
    try:
        return body, images.decode_compressed(bytes(frames[1]), encoding, TRUSTED_REPLY_LIMITS.max_pixels)
    except images.ImageError as exc:
        raise BadReply(str(exc)) from None
