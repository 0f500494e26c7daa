"""Many requests in flight on one DEALER socket, matched to replies by id, resent on timeout;
and `ordered`, which gives their outcomes back in input order (folder runs and video use it).

A REP server (or a broker in front of REP workers) answers DEALER peers whose
messages start with an empty delimiter frame, so the same server serves both
this and a plain REQ client.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, TypeVar

import zmq

from facewire.wire import protocol
from facewire.wire.transport import Secure, open_socket, plain

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

    def __init__(self, context: zmq.Context, server: str, timeout: float, retries: int, secure: Secure = plain):
        self.context, self.server, self.timeout, self.retries, self.secure = context, server, timeout, retries, secure
        self.socket = self._connect()
        self.pending: dict[int, _Pending] = {}

    def _connect(self) -> zmq.Socket:
        return open_socket(self.context, zmq.DEALER, self.server, secure=self.secure)

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


Outcome = TypeVar("Outcome")
FramesFor = Callable[[int], list[Any]]
"""A request waiting to be sent: given its id, its frames."""


def ordered(pipeline: Pipeline, requests: Iterable[FramesFor | Exception], in_flight: int,
            outcome: Callable[[list[memoryview]], Outcome], window: int | None = None) -> Iterator[Outcome | Exception]:
    """Exactly one outcome per request, in input order, with up to `in_flight` requests outstanding.

    Requests are taken from `requests` only as they can be sent, so a generator of them can
    depend on the outcomes already given (video's track tokens do); with `window`, request i
    is taken only once outcome i - window has been given, so that it depends on an outcome at
    most `window` behind even when later requests are answered first. An item that is an
    Exception (say, a file that could not be read) is passed through in its place; a reply
    becomes `outcome(frames)`. Once a request goes unanswered after every retry, the server
    is taken as gone: every request pending or not yet sent yields a ServerUnavailable, and
    nothing more is sent. The pipeline is closed at the end, or when the caller stops early.
    """
    try:
        items, done, outcomes, next_out, taken = enumerate(requests), False, {}, 0, 0
        unsent: ServerUnavailable | None = None
        while True:
            while next_out in outcomes:  # first, so that the requests taken next can depend on these outcomes
                yield outcomes.pop(next_out)
                next_out += 1
            while (not done and len(pipeline) < in_flight and next_out not in outcomes
                   and (window is None or taken < next_out + window)):
                index, item = next(items, (None, None))
                taken += 1
                if index is None:
                    done = True
                elif isinstance(item, Exception):
                    outcomes[index] = item
                elif unsent:
                    outcomes[index] = unsent  # one at a time, so that errors come out as the requests are read
                else:
                    pipeline.send(index, item(index))
            if next_out in outcomes:
                continue
            if not pipeline:  # then every request was taken, and every outcome given
                return
            try:
                index, reply = pipeline.receive()
            except ServerUnavailable as exc:
                outcomes.update(dict.fromkeys(pipeline.abandon(), exc))
                unsent = ServerUnavailable(f"not sent: the server is gone ({exc})")
                continue
            outcomes[index] = outcome(reply)
    finally:
        pipeline.close()
