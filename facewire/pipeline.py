"""Many requests in flight on one DEALER socket, matched to replies by id, resent on timeout.

A REP server (or a broker in front of REP workers) answers DEALER peers whose
messages start with an empty delimiter frame, so the same server serves both
this and a plain REQ client.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import zmq

from . import protocol
from .transport import keepalive

log = logging.getLogger(__name__)


class ServerUnavailable(ConnectionError):
    """No reply after every retry."""


@dataclass
class _Pending:
    frames: list[Any]
    deadline: float
    attempts: int = 1


class Pipeline:
    """Send requests tagged with ids; `receive` returns (id, reply frames) as replies arrive."""

    def __init__(self, context: zmq.Context, server: str, timeout: float, retries: int,
                 secure: Callable[[zmq.Socket], None] | None = None):
        self.context, self.server, self.timeout, self.retries, self.secure = context, server, timeout, retries, secure
        self.socket = self._connect()
        self.pending: dict[int, _Pending] = {}

    def _connect(self) -> zmq.Socket:
        socket = self.context.socket(zmq.DEALER)
        try:
            keepalive(socket)
            if self.secure:
                self.secure(socket)
            socket.connect(self.server)
        except BaseException:
            socket.close(linger=0)  # an open socket would keep the context from ever terminating
            raise
        return socket

    def __len__(self) -> int:
        return len(self.pending)

    def send(self, request_id: int, frames: list[Any]) -> None:
        self.pending[request_id] = _Pending(frames, time.monotonic() + self.timeout)
        self._send(frames)

    def _send(self, frames: list[Any]) -> None:
        """Never block: with no live peer (say, a refused CURVE handshake) the attempt is lost and retried."""
        try:
            self.socket.send_multipart([b"", *frames], copy=False, flags=zmq.NOBLOCK)
        except zmq.Again:
            pass

    def receive(self) -> tuple[int, list[memoryview]]:
        """The next reply to a pending request; resends overdue requests; raises ServerUnavailable."""
        while True:
            wait = min(p.deadline for p in self.pending.values()) - time.monotonic()
            if self.socket.poll(max(0, int(wait * 1000))):
                frames = [frame.buffer for frame in self.socket.recv_multipart(copy=False)]  # no 6 MB copies
                request_id = _reply_id(frames[1:]) if frames[:1] and not frames[0].nbytes else None
                if request_id in self.pending:
                    del self.pending[request_id]
                    return request_id, frames[1:]
                continue  # a late duplicate of a resent request, or noise
            self._resend_overdue()

    def _resend_overdue(self) -> None:
        """Lazy pirate for many: on a timeout, a fresh socket, and every pending request sent again."""
        now = time.monotonic()
        overdue = [p for p in self.pending.values() if p.deadline <= now]
        if not overdue:
            return
        if any(p.attempts > self.retries for p in overdue):
            attempts = max(p.attempts for p in overdue)
            raise ServerUnavailable(f"no reply from {self.server} after {attempts} attempt(s) of {self.timeout:g} s")
        log.warning("no reply from %s in %.1f s; reconnecting and resending %d request(s)",
                    self.server, self.timeout, len(self.pending))
        self.socket.close(linger=0)
        self.socket = self._connect()
        for pending in self.pending.values():
            pending.attempts += pending in overdue
            pending.deadline = now + self.timeout
            self._send(pending.frames)

    def abandon(self) -> list[int]:
        """Give up on every pending request (say, after ServerUnavailable): their ids."""
        ids = list(self.pending)
        self.pending.clear()
        return ids

    def close(self) -> None:
        self.socket.close(linger=0)


def _reply_id(frames: list[memoryview]) -> Any:
    try:
        return protocol.unpack_reply(frames[:1])[0].get("id")
    except protocol.ProtocolError:
        return None
