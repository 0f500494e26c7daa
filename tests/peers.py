"""Test doubles for the client side: a stand-in server on a ROUTER socket, in a thread of the test process.

It answers the way a real server would be allowed to, but awkwardly: replies come back out of
order (the requests it holds are answered last first), some attempts are never answered, and
duplicates or stray messages can be thrown in. Each reply names the frame it answers by the
marker pixel of that request's image, so a test can tell that every result is its own input's.
Every wait has a deadline: `deadline()` interrupts a client that blocks too long.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np
import zmq

from facewire.wire import protocol

WAIT = 10.0
"""Seconds any one test may block on the client before it fails (generous: the machine may be busy)."""


@contextmanager
def deadline(seconds: float = WAIT) -> Iterator[None]:
    """Fail with TimeoutError if the block takes longer (SIGALRM interrupts a blocked zmq poll)."""
    def expire(*_: object) -> None:
        raise TimeoutError(f"still waiting after {seconds} s")

    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, expire)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:  # an enclosing alarm (say, pytest-timeout's): set it again for the time it has left
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - started), 1e-3))


def marked(value: int, shape: tuple[int, ...] = (4, 6, 3)) -> np.ndarray:
    """A small image whose every pixel is `value`: the marker a Peer reads back."""
    return np.full(shape, value, dtype=np.uint8)


def wait_until(condition: Callable[[], bool], seconds: float = WAIT) -> bool:
    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


class Request:
    """One request as the peer received it: the client socket's identity, header and image."""

    def __init__(self, identity: bytes, frames: list[bytes]):
        self.identity = identity
        self.header: dict[str, Any] = json.loads(frames[0])
        self.image = protocol.parse_request(frames).image if len(frames) > 1 else None
        self.id = self.header.get("id")

    @property
    def marker(self) -> int | None:
        return None if self.image is None else int(self.image.flat[0])


def recognized(request: Request) -> list[bytes]:
    """The default answer: one face named after the image's marker, with a track token naming the request."""
    if request.header.get("op") != "recognize":
        return protocol.pack_reply({"op": request.header.get("op"), "seen": request.header, "id": request.id})
    faces = [{"name": f"frame{request.marker}", "distance": 0.25, "confidence": 0.8, "box": [0, 1, 1, 0],
              "tracked": False, "track": f"token{request.marker}"}]
    body = {"op": "recognize", "faces": faces, "timings_ms": {"total": 1.0}}
    if request.id is not None:
        body["id"] = request.id
    return protocol.pack_reply(body)


class Peer:
    """A ROUTER in a thread. Requests are held until `batch` are waiting, or none has come for
    `hold` seconds; then the held ones are answered in reverse order of arrival.

    `ignore(request, attempt)` -> True drops that attempt (attempts count from 1 per id, or per
    marker for requests without an id). `answer(request)` makes the reply frames. With
    `duplicates`, every reply is sent twice; with `noise`, a reply to an id nobody asked for, a
    message that is not JSON, and, before each reply, an impostor reply to the same id without the
    empty delimiter go out too. `secure` sets up the socket (say, as a CURVE server) before it binds.
    """

    def __init__(self, answer: Callable[[Request], list[bytes]] = recognized, batch: int | None = None,
                 hold: float = 0.2, ignore: Callable[[Request, int], bool] = lambda request, attempt: False,
                 duplicates: bool = False, noise: bool = False,
                 secure: Callable[[zmq.Socket], None] | None = None):
        self.answer, self.batch, self.hold, self.ignore = answer, batch, hold, ignore
        self.duplicates, self.noise = duplicates, noise
        self.received: list[Request] = []
        self.outstanding = 0
        self.max_outstanding = 0
        self.attempts: dict[Any, int] = {}
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        if secure:
            secure(self.socket)
        port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        self.address = f"tcp://127.0.0.1:{port}"
        self.stopping = threading.Event()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> Peer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        self.thread.join(WAIT)
        self.socket.close(linger=0)
        self.context.term()
        if self.failure and exc_info[0] is None:
            raise self.failure

    def count(self, key: Any) -> int:
        """How many attempts of the request with this id (or marker) arrived."""
        return self.attempts.get(key, 0)

    def _serve(self) -> None:
        held: list[Request] = []
        last = time.monotonic()
        try:
            while not self.stopping.is_set():
                if self.socket.poll(10):
                    identity, empty, *frames = self.socket.recv_multipart()
                    assert empty == b"", "a REQ or DEALER client starts its message with an empty frame"
                    request = Request(identity, frames)
                    key = request.id if request.id is not None else request.marker
                    self.attempts[key] = self.attempts.get(key, 0) + 1
                    self.received.append(request)
                    if not self.ignore(request, self.attempts[key]):
                        held.append(request)
                        self.outstanding += 1
                        self.max_outstanding = max(self.max_outstanding, self.outstanding)
                    last = time.monotonic()
                full = self.batch is not None and len(held) >= self.batch
                if held and (full or time.monotonic() - last >= self.hold):
                    self._answer(held[::-1])
                    held = []
        except BaseException as exc:  # reported by __exit__
            self.failure = exc

    def _answer(self, requests: list[Request]) -> None:
        if self.noise:
            identity = requests[0].identity
            self.socket.send_multipart([identity, b"", *protocol.pack_reply({"op": "recognize", "id": 10**6})])
            self.socket.send_multipart([identity, b"", b"not json"])
        for request in requests:
            if self.noise:
                impostor = protocol.pack_reply({"op": "recognize", "id": request.id, "faces": [{"name": "impostor"}]})
                self.socket.send_multipart([request.identity, b"no delimiter", *impostor])
            reply = [request.identity, b"", *self.answer(request)]
            self.outstanding -= 1
            for _ in range(2 if self.duplicates else 1):
                self.socket.send_multipart(reply)
