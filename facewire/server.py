"""Transport: bind a REP socket and answer each request with `Service.handle`."""

from __future__ import annotations

import logging
import threading

import dlib
import zmq

from .protocol import Limits
from .service import Service

log = logging.getLogger(__name__)

POLL_MS = 200


def dlib_description() -> str:
    """Which dlib this process runs, for the start-up log."""
    return (
        f"dlib {dlib.__version__} (AVX {'on' if dlib.USE_AVX_INSTRUCTIONS else 'off'}, "
        f"BLAS {'on' if dlib.DLIB_USE_BLAS else 'off'}, CUDA {'on' if dlib.DLIB_USE_CUDA else 'off'})"
    )


def _rep(context: zmq.Context, limits: Limits) -> zmq.Socket:
    """A REP socket; frames over the limit drop the peer (ZeroMQ's MAXMSGSIZE)."""
    socket = context.socket(zmq.REP)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.MAXMSGSIZE, limits.max_frame_bytes)
    return socket


def bind_rep(context: zmq.Context, address: str, limits: Limits) -> zmq.Socket:
    """A REP socket bound to `address`, for a server that answers in one process."""
    socket = _rep(context, limits)
    socket.bind(address)
    return socket


def connect_rep(context: zmq.Context, address: str, limits: Limits) -> zmq.Socket:
    """A REP socket connected to a broker's worker address, for one worker."""
    socket = _rep(context, limits)
    socket.connect(address)
    return socket


def serve(service: Service, socket: zmq.Socket, stop: threading.Event) -> None:
    """Answer requests on a bound REP socket until `stop` is set; closes the socket."""
    try:
        while not stop.is_set():
            if not socket.poll(POLL_MS):
                continue
            frames = socket.recv_multipart(copy=False)
            socket.send_multipart(service.handle([frame.buffer for frame in frames]), copy=False)
    finally:
        socket.close()
        log.info("stopped")
