"""The broker: pyzmq's steerable proxy between clients (a bound ROUTER) and workers (a bound DEALER).

Workers are REP sockets that connect to the DEALER, on this host or any other; every
request goes to the next worker in turn.
"""

from __future__ import annotations

import threading

import zmq

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
        try:
            zmq.proxy_steerable(self.frontend, self.backend, None, self.control)
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
