"""The wire protocol: multipart frames <-> (header, array), with validation and limits.

Request:  [JSON header, raw pixels]   header = {"op": "recognize", "dtype": "uint8",
                                                "shape": [h, w] | [h, w, 1|3|4], ...options}
          [JSON header]               header = {"op": "ping"}
Reply:    [JSON body, raw pixels?]    body = {"ok": true, ...}  or
          [JSON body]                 body = {"ok": false, "error": {"code", "message"}}
Classic:  a request header with only "dtype" and "shape" (pyzmq's send_array) is
          answered in the same form: [{"dtype", "shape"}, raw pixels].
Nothing here knows about sockets or faces.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

MAX_HEADER_BYTES = 64 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
CHANNELS = (1, 3, 4)
OPS = ("recognize", "ping")
RECOGNIZE_OPTIONS = {"tolerance", "annotate"}
ARRAY_KEYS = {"dtype", "shape"}

Buffer = bytes | bytearray | memoryview


class ProtocolError(Exception):
    """A request the server refuses; `code` is machine-readable, the message is for people."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Limits:
    """Size limits; `max_frame_bytes` is what the transport should cap each frame at."""

    max_pixels: int = DEFAULT_MAX_PIXELS

    @property
    def max_frame_bytes(self) -> int:
        return self.max_pixels * max(CHANNELS) + MAX_HEADER_BYTES


TRUSTED_REPLY_LIMITS = Limits(max_pixels=2**62)
"""The client checks a reply's shape against its buffer, but not its size: it asked for it."""


@dataclass(frozen=True)
class Request:
    """A validated request. `classic` marks pyzmq's plain send_array framing."""

    op: str
    options: dict[str, Any]
    image: np.ndarray | None = None
    classic: bool = False


def parse_request(frames: Sequence[Buffer], limits: Limits = Limits()) -> Request:
    """Validate frames into a Request, or raise ProtocolError saying what is wrong."""
    if not frames:
        raise ProtocolError("bad_request", "empty message")
    header = _parse_header(frames[0])
    classic = "op" not in header and set(header) == ARRAY_KEYS
    op = "recognize" if classic else header.get("op")
    if op not in OPS:
        raise ProtocolError("unknown_op", f"unknown op {op!r}; expected one of {', '.join(OPS)}")
    if op == "ping":
        _expect_frames(frames, 1, "ping takes 1 frame (the JSON header)")
        return Request("ping", {})
    _expect_frames(frames, 2, "recognize takes 2 frames: JSON header, then raw pixels")
    options = {k: v for k, v in header.items() if k not in ARRAY_KEYS | {"op"}}
    image = array_from_frame(header, frames[1], limits)
    return Request("recognize", _check_options(options), image, classic)


def _parse_header(frame: Buffer) -> dict[str, Any]:
    size = memoryview(frame).nbytes
    if size > MAX_HEADER_BYTES:
        raise ProtocolError("too_large", f"header frame is {size} bytes; limit {MAX_HEADER_BYTES}")
    try:
        header = json.loads(bytes(frame))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ProtocolError("bad_header", "first frame is not valid UTF-8 JSON") from None
    if not isinstance(header, dict):
        raise ProtocolError("bad_header", "header must be a JSON object")
    return header


def _expect_frames(frames: Sequence[Buffer], count: int, message: str) -> None:
    if len(frames) != count:
        raise ProtocolError("bad_request", f"{message}; got {len(frames)} frames")


def _check_options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = set(options) - RECOGNIZE_OPTIONS
    if unknown:
        raise ProtocolError("bad_option", f"unknown option(s) {sorted(unknown)}; allowed: {sorted(RECOGNIZE_OPTIONS)}")
    tolerance = options.get("tolerance")
    if tolerance is not None and not (_is_number(tolerance) and 0 <= tolerance <= 2):
        raise ProtocolError("bad_option", "tolerance must be a number from 0 to 2")
    if not isinstance(options.get("annotate", True), bool):
        raise ProtocolError("bad_option", "annotate must be true or false")
    return options


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def array_from_frame(header: dict[str, Any], frame: Buffer, limits: Limits) -> np.ndarray:
    """The image a header describes, checked against the pixel frame and the limits."""
    if header.get("dtype") != "uint8":
        raise ProtocolError("bad_dtype", f"dtype must be 'uint8', got {header.get('dtype')!r}")
    shape = header.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) not in (2, 3)
        or not all(isinstance(n, int) and not isinstance(n, bool) for n in shape)
    ):
        raise ProtocolError("bad_shape", "shape must be [height, width] or [height, width, channels]")
    if len(shape) == 3 and shape[2] not in CHANNELS:
        raise ProtocolError("bad_shape", f"channels must be 1, 3 (BGR) or 4 (BGRA), got {shape[2]}")
    if shape[0] < 1 or shape[1] < 1:
        raise ProtocolError("bad_shape", f"height and width must be positive, got {shape[:2]}")
    if shape[0] * shape[1] > limits.max_pixels:
        raise ProtocolError(
            "too_large", f"image of {shape[0]}x{shape[1]} pixels exceeds the limit of {limits.max_pixels}"
        )
    expected, actual = math.prod(shape), memoryview(frame).nbytes
    if actual != expected:
        raise ProtocolError("bad_shape", f"shape {shape} needs {expected} bytes, pixel frame has {actual}")
    return np.frombuffer(frame, dtype=np.uint8).reshape(shape)


def array_header(image: np.ndarray) -> dict[str, Any]:
    return {"dtype": str(image.dtype), "shape": list(image.shape)}


def raw_bytes(image: np.ndarray) -> memoryview:
    """The array's pixels as a flat byte view (no copy when already contiguous)."""
    return np.ascontiguousarray(image).reshape(-1).view(np.uint8).data


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, allow_nan=False, ensure_ascii=False).encode()


def pack_request(op: str, image: np.ndarray | None = None, **options: Any) -> list[bytes]:
    """Client side: frames for a request (`image` for recognize)."""
    if image is None:
        return [_json({"op": op, **options})]
    return [_json({"op": op, **array_header(image), **options}), raw_bytes(image)]


def pack_classic(image: np.ndarray) -> list[bytes]:
    """pyzmq's send_array framing: JSON dtype/shape, then the raw buffer."""
    return [_json(array_header(image)), raw_bytes(image)]


def pack_reply(body: dict[str, Any], image: np.ndarray | None = None) -> list[bytes]:
    """A success reply; the image (if any) follows the JSON body, described under "image"."""
    if image is None:
        return [_json({"ok": True, **body})]
    return [_json({"ok": True, **body, "image": array_header(image)}), raw_bytes(image)]


def pack_error(code: str, message: str) -> list[bytes]:
    return [_json({"ok": False, "error": {"code": code, "message": message}})]


def unpack_reply(frames: Sequence[Buffer]) -> tuple[dict[str, Any], np.ndarray | None]:
    """Client side: (body, image or None); raises ProtocolError on a malformed reply."""
    body = _parse_header(frames[0]) if frames else {}
    if "ok" not in body:
        raise ProtocolError("bad_reply", "reply has no 'ok' field")
    if "image" not in body or len(frames) < 2:
        return body, None
    return body, array_from_frame(body["image"], frames[1], TRUSTED_REPLY_LIMITS)
