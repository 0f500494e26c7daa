"""The client: `Client(server).recognize(image)`, or `recognize_many(images)` pipelined.

One request at a time goes over a REQ socket with lazy-pirate retries; many go
over a DEALER socket (see pipeline.py) with several in flight.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np
import zmq

from facewire.client.pipeline import FramesFor, Pipeline, ServerUnavailable, ordered
from facewire.wire import protocol
from facewire.wire.keys import PLAIN, ClientKeys, NoKeys
from facewire.wire.protocol import FaceResult
from facewire.wire.transport import open_socket

log = logging.getLogger(__name__)

DEFAULT_SERVER = "tcp://127.0.0.1:5555"


class ServerError(RuntimeError):
    """The server answered with an error reply."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(frozen=True)
class Result:
    """One image's answer: its faces, the server's timings, and the annotated image (if asked for)."""

    faces: list[FaceResult]
    timings_ms: dict[str, float]
    image: np.ndarray | None

    @property
    def names(self) -> list[str]:
        return [face.name for face in self.faces]


class Client:
    """Talks to a facewire server; never blocks longer than timeout x (retries + 1)."""

    def __init__(self, server: str = DEFAULT_SERVER, timeout: float = 20.0, retries: int = 2, wire: str = "raw",
                 keys: ClientKeys | NoKeys = PLAIN):
        self.server = server
        self.keys = keys
        self.timeout_ms = int(timeout * 1000)
        self.retries = retries
        self.wire = wire
        self.context = zmq.Context()
        self.socket = self._connect()

    def _connect(self) -> zmq.Socket:
        socket = open_socket(self.context, zmq.REQ, self.server, secure=self.keys.secure)
        # A REQ socket whose connection failed its handshake (say, no CURVE keys for a CURVE server) has no
        # peer, and a send then blocks for good: wait for the send no longer than for a reply.
        socket.setsockopt(zmq.SNDTIMEO, self.timeout_ms)
        return socket

    def request(self, frames: list[Any]) -> list[bytes]:
        """Send frames and return the reply's; on a timeout, reopen the socket and resend (lazy pirate)."""
        for attempt in range(self.retries + 1):
            try:
                self.socket.send_multipart(frames, copy=False)
                if self.socket.poll(self.timeout_ms, zmq.POLLIN):
                    return self.socket.recv_multipart()
            except zmq.Again:
                pass  # not even sent within the timeout
            log.warning("no reply from %s in %.1f s (attempt %d of %d)",
                        self.server, self.timeout_ms / 1000, attempt + 1, self.retries + 1)
            self.socket.close(linger=0)
            self.socket = self._connect()
        raise ServerUnavailable(
            f"no reply from {self.server} after {self.retries + 1} attempt(s) of {self.timeout_ms / 1000:g} s"
        )

    def call(self, frames: list[Any]) -> tuple[dict[str, Any], np.ndarray | None]:
        """A request whose error reply becomes ServerError."""
        return _checked(self.request(frames))

    def ping(self) -> dict[str, Any]:
        return self.call(protocol.pack_request("ping"))[0]

    def enroll(self, name: str, image: np.ndarray) -> dict[str, Any]:
        """Add a photo (exactly one face) of `name` to the server's gallery."""
        return self.call(protocol.pack_request("enroll", image, self.wire, name=name))[0]

    def photo(self, name: str) -> np.ndarray:
        """A thumbnail of one of `name`'s photos in the server's gallery (BGR)."""
        _, image = self.call(protocol.pack_request("photo", name=name))
        if image is None:
            raise protocol.BadReply("a photo reply without its image")
        return image

    def gallery_op(self, op: str, **options: Any) -> dict[str, Any]:
        """list, remove (name=...) or reload: the reply body."""
        return self.call(protocol.pack_request(op, **options))[0]

    def recognize(self, image: np.ndarray, annotate: bool = True, tolerance: float | None = None) -> Result:
        """Recognise faces in a BGR (or grey, or BGRA) uint8 image."""
        frames = protocol.pack_request("recognize", image, self.wire, **_options(annotate, tolerance))
        return _result(*self.call(frames))

    def verify(self, image_a: np.ndarray, image_b: np.ndarray | None = None, name: str | None = None,
               tolerance: float | None = None) -> dict[str, Any]:
        """Whether image_a's one face is image_b's, or the gallery's person `name`: the reply body, with `same`,
        `distance`, `threshold`, `decision` ("same" or "different") and `faces`, each image's box."""
        if (image_b is None) == (name is None):
            raise ValueError("verify compares image_a with image_b or with a name: give one of them")
        options = {key: value for key, value in (("name", name), ("tolerance", tolerance)) if value is not None}
        return self.call(protocol.pack_verify(image_a, image_b, self.wire, **options))[0]

    def recognize_many(
        self, images: Iterable[np.ndarray | Exception], in_flight: int = 4,
        annotate: bool = True, tolerance: float | None = None,
    ) -> Iterator[Result | Exception]:
        """Exactly one outcome per image, in input order, with up to `in_flight` requests outstanding.

        An item that is an Exception (say, a file that could not be read) is passed
        through in its place; a refused image yields its ServerError. Once a request
        goes unanswered after every retry, the server is taken as gone: every image
        pending or not yet sent yields a ServerUnavailable, and nothing more is sent.
        """
        options = _options(annotate, tolerance)
        requests = (item if isinstance(item, Exception) else self.recognize_request(item, **options) for item in images)
        return self.in_order(requests, in_flight)

    def recognize_request(self, image: np.ndarray, **options: Any) -> FramesFor:
        """A recognize request for `in_order`: its frames once it is given an id."""
        return lambda request_id: protocol.pack_request("recognize", image, self.wire, id=request_id, **options)

    def in_order(self, requests: Iterable[FramesFor | Exception], in_flight: int,
                 window: int | None = None) -> Iterator[Result | Exception]:
        """Outcomes of `requests`, pipelined, one per request in input order (see pipeline.ordered)."""
        pipeline = Pipeline(self.context, self.server, self.timeout_ms / 1000, self.retries, self.keys.secure)
        yield from ordered(pipeline, requests, in_flight, reply_outcome, window)

    def close(self) -> None:
        """Close every socket of this client (a pipeline left unfinished too), then its context."""
        self.context.destroy(linger=0)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _options(annotate: bool, tolerance: float | None) -> dict[str, Any]:
    return {"annotate": annotate} if tolerance is None else {"annotate": annotate, "tolerance": tolerance}


def _checked(frames: list[bytes]) -> tuple[dict[str, Any], np.ndarray | None]:
    body, image = protocol.unpack_reply(frames)
    if not body["ok"]:
        error = body.get("error", {})
        raise ServerError(error.get("code", "unknown"), error.get("message", ""))
    return body, image


def _result(body: dict[str, Any], image: np.ndarray | None) -> Result:
    faces = body.get("faces")
    if not isinstance(faces, list):
        raise protocol.BadReply("a recognize reply without a list of faces")
    return Result([FaceResult.from_json(face) for face in faces], body.get("timings_ms", {}), image)


def reply_outcome(frames: list[bytes]) -> Result | Exception:
    """A reply as a Result, or as the ServerError (or ProtocolError) it carries."""
    try:
        return _result(*_checked(frames))
    except (ServerError, protocol.ProtocolError) as exc:
        return exc
