"""The broker: a proxy between clients (a bound ROUTER) and workers (a bound DEALER).

Workers are REP sockets that connect to the DEALER, on this host or any other; every
request goes to the next worker in turn. On its way the broker puts one frame before each
request's body: the stamp of its sender (`keys.Sender`: the name the ZAP handler gave the
client's CURVE key, and whether it may edit; "editor:anonymous" without CURVE), which the
worker takes off again (`worker.serve`). A client cannot forge it: whatever it sends comes after.
"""

from __future__ import annotations

import threading

import zmq

from facewire.wire.keys import ANONYMOUS, Sender
from facewire.wire.transport import Secure, open_socket, plain

CONTROL_ADDRESS = "inproc://facewire-proxy-control"


class Proxy:
    """The proxy, run in a thread of this process by `start`, ended by `stop`."""

    def __init__(self, context: zmq.Context, frontend: str, backend: str, max_bytes: int,
                 secure_frontend: Secure = plain, secure_backend: Secure = plain):
        self.context = context
        self.frontend = open_socket(context, zmq.ROUTER, frontend, bind=True, secure=secure_frontend,
                                    max_bytes=max_bytes, serving=True)
        try:
            self.backend = open_socket(context, zmq.DEALER, backend, bind=True, secure=secure_backend,
                                       max_bytes=max_bytes)
        except BaseException:
            self.frontend.close(linger=0)
            raise
        self.control = context.socket(zmq.PAIR)
        self.control.bind(CONTROL_ADDRESS)
        self.thread = threading.Thread(target=self._run, name="proxy", daemon=True)

    def endpoints(self) -> tuple[str, str]:
        """The addresses actually bound (a port of 0 or a wildcard resolved)."""
        return (self.frontend.getsockopt_string(zmq.LAST_ENDPOINT),
                self.backend.getsockopt_string(zmq.LAST_ENDPOINT))

    def _run(self) -> None:
        poller = zmq.Poller()
        for socket in (self.frontend, self.backend, self.control):
            poller.register(socket, zmq.POLLIN)
        try:
            while True:
                ready = dict(poller.poll())
                if self.control in ready:
                    return
                if self.frontend in ready:
                    request = stamped(self.frontend.recv_multipart(copy=False))
                    if request is not None:
                        self.backend.send_multipart(request, copy=False)
                if self.backend in ready:
                    self.frontend.send_multipart(self.backend.recv_multipart(copy=False), copy=False)
        except zmq.ContextTerminated:
            pass

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Tell the proxy to end, wait for it, and close its sockets."""
        with self.context.socket(zmq.PAIR) as steer:
            steer.connect(CONTROL_ADDRESS)
            steer.send(b"TERMINATE")
            self.thread.join(timeout=5)
        for socket in (self.frontend, self.backend, self.control):
            socket.close(linger=0)


def stamped(frames: list[zmq.Frame]) -> list[zmq.Frame | bytes] | None:
    """A client's message [identity, b"", body...] as [identity, b"", stamp, body...]; None for
    a message no REP worker could answer (no empty delimiter after the identity)."""
    if len(frames) < 3 or frames[1].bytes != b"":
        return None
    return [*frames[:2], sender_of(frames[2]).stamp(), *frames[2:]]


def sender_of(frame: zmq.Frame) -> Sender:
    """Who sent `frame`: the User-Id the ZAP handler gave its connection, or ANONYMOUS without CURVE."""
    try:
        return Sender.from_stamp(frame.get("User-Id").encode())
    except zmq.ZMQError:  # no ZAP handler ran for this connection
        return ANONYMOUS
