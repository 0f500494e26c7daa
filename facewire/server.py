"""Transport: bind a REP socket and answer each request with `Service.handle`."""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
import time
from typing import Callable
from urllib.parse import urlsplit

import dlib
import zmq

from .protocol import Limits
from .transport import bounded_queue
from .service import Service

log = logging.getLogger(__name__)

POLL_MS = 200


def dlib_description() -> str:
    """Which dlib this process runs, for the start-up log."""
    return (
        f"dlib {dlib.__version__} (AVX {'on' if dlib.USE_AVX_INSTRUCTIONS else 'off'}, "
        f"BLAS {'on' if dlib.DLIB_USE_BLAS else 'off'}, CUDA {'on' if dlib.DLIB_USE_CUDA else 'off'})"
    )


Secure = Callable[[zmq.Socket], None]
"""Puts CURVE keys on a socket (see keys.py); None for a plain socket."""


def _rep(context: zmq.Context, limits: Limits, secure: Secure | None) -> zmq.Socket:
    """A REP socket; frames over the limit drop the peer (ZeroMQ's MAXMSGSIZE)."""
    socket = context.socket(zmq.REP)
    bounded_queue(socket)
    socket.setsockopt(zmq.MAXMSGSIZE, limits.max_frame_bytes)
    if secure:
        secure(socket)
    return socket


def bind_rep(context: zmq.Context, address: str, limits: Limits, secure: Secure | None = None) -> zmq.Socket:
    """A REP socket bound to `address`, for a server that answers in one process."""
    socket = _rep(context, limits, secure)
    socket.bind(address)
    return socket


def is_public(address: str) -> bool:
    """True for a tcp:// address other hosts can reach (anything but loopback)."""
    if not address.startswith("tcp://"):
        return False
    host = urlsplit(address).hostname or ""
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # "*", an interface name or a host name


def connect_rep(context: zmq.Context, address: str, limits: Limits, secure: Secure | None = None) -> zmq.Socket:
    """A REP socket connected to a broker's worker address, for one worker."""
    socket = _rep(context, limits, secure)
    socket.connect(address)
    return socket


HEARTBEAT_SECONDS = 1.0


def serve(service: Service, socket: zmq.Socket, stop: threading.Event, status: zmq.Socket | None = None) -> None:
    """Answer requests on a REP socket until `stop` is set; closes the socket.

    With a `status` socket (a worker under a local broker) it reports b"busy" on taking a
    request, b"idle" when done, and b"idle" each second while waiting: the broker's
    watchdog kills a worker that stays busy too long or falls silent.
    """
    last_beat = 0.0
    try:
        while not stop.is_set():
            if status is not None and time.monotonic() - last_beat >= HEARTBEAT_SECONDS:
                _report(status, b"idle")
                last_beat = time.monotonic()
            if not socket.poll(POLL_MS):
                continue
            frames = socket.recv_multipart(copy=False)
            if status is not None:
                _report(status, b"busy")
            socket.send_multipart(service.handle([frame.buffer for frame in frames]), copy=False)
            last_beat = 0.0
    finally:
        socket.close()
        log.info("stopped")


def _report(status: zmq.Socket, state: bytes) -> None:
    try:
        status.send_multipart([str(os.getpid()).encode(), state], flags=zmq.NOBLOCK)
    except zmq.Again:
        pass  # the broker is gone or slow: serving matters more than reporting
