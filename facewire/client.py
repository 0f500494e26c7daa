"""A REQ client with timeouts and lazy-pirate retries: `Client(server).recognize(image)`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import zmq

from . import protocol

log = logging.getLogger(__name__)

DEFAULT_SERVER = "tcp://127.0.0.1:5555"


class ServerUnavailable(ConnectionError):
    """No reply after every retry."""


class ServerError(RuntimeError):
    """The server answered with an error reply."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(frozen=True)
class Result:
    """One image's answer: faces as dicts (name, distance, box), timings, annotated image."""

    faces: list[dict[str, Any]]
    timings_ms: dict[str, float]
    image: np.ndarray | None

    @property
    def names(self) -> list[str]:
        return [face["name"] for face in self.faces]


class Client:
    """Talks to a facewire server; never blocks longer than timeout x (retries + 1)."""

    def __init__(self, server: str = DEFAULT_SERVER, timeout: float = 20.0, retries: int = 2):
        self.server = server
        self.timeout_ms = int(timeout * 1000)
        self.retries = retries
        self.context = zmq.Context()
        self.socket = self._connect()

    def _connect(self) -> zmq.Socket:
        socket = self.context.socket(zmq.REQ)
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(self.server)
        return socket

    def request(self, frames: list[Any]) -> list[bytes]:
        """Send frames and return the reply's; on a timeout, reopen the socket and resend (lazy pirate)."""
        for attempt in range(self.retries + 1):
            self.socket.send_multipart(frames, copy=False)
            if self.socket.poll(self.timeout_ms, zmq.POLLIN):
                return self.socket.recv_multipart()
            log.warning("no reply from %s in %.1f s (attempt %d of %d)",
                        self.server, self.timeout_ms / 1000, attempt + 1, self.retries + 1)
            self.socket.close(linger=0)
            self.socket = self._connect()
        raise ServerUnavailable(
            f"no reply from {self.server} after {self.retries + 1} attempt(s) of {self.timeout_ms / 1000:g} s"
        )

    def call(self, frames: list[Any]) -> tuple[dict[str, Any], np.ndarray | None]:
        """A request whose error reply becomes ServerError."""
        body, image = protocol.unpack_reply(self.request(frames))
        if not body["ok"]:
            error = body.get("error", {})
            raise ServerError(error.get("code", "unknown"), error.get("message", ""))
        return body, image

    def ping(self) -> dict[str, Any]:
        return self.call(protocol.pack_request("ping"))[0]

    def recognize(self, image: np.ndarray, annotate: bool = True, tolerance: float | None = None) -> Result:
        """Recognise faces in a BGR (or grey, or BGRA) uint8 image."""
        options: dict[str, Any] = {"annotate": annotate}
        if tolerance is not None:
            options["tolerance"] = tolerance
        body, annotated = self.call(protocol.pack_request("recognize", image, **options))
        return Result(body["faces"], body.get("timings_ms", {}), annotated)

    def close(self) -> None:
        self.socket.close(linger=0)
        self.context.term()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
