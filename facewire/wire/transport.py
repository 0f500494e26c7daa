"""Every facewire socket comes from `open_socket`: its kind, CURVE keys, size limit and heartbeats."""

from __future__ import annotations

import ipaddress
from typing import Callable
from urllib.parse import urlsplit

import zmq

HEARTBEAT_IVL_MS = 2000
HEARTBEAT_TIMEOUT_MS = 6000
FRONTEND_QUEUE = 4
"""Requests queued per client at the server; past it ZeroMQ stops reading that client (back-pressure)."""

Secure = Callable[[zmq.Socket], None]
"""Puts CURVE keys on a socket before it binds or connects (see keys.py); `plain` for none."""


def plain(socket: zmq.Socket) -> None:
    """No CURVE: the socket stays as it is."""


def open_socket(context: zmq.Context, kind: int, address: str, *, bind: bool = False, secure: Secure = plain,
                max_bytes: int | None = None, serving: bool = False) -> zmq.Socket:
    """A socket of `kind`, bound to or connected to `address`.

    Every socket gets heartbeats (`keepalive`); one that serves requests (`serving`) gets a
    bounded queue per peer instead (`bounded_queue`). `max_bytes` caps each incoming message:
    a peer that sends more is dropped (ZeroMQ's MAXMSGSIZE). A socket that fails to bind or
    connect is closed, so that its context can still end.
    """
    socket = context.socket(kind)
    try:
        (bounded_queue if serving else keepalive)(socket)
        if max_bytes is not None:
            socket.setsockopt(zmq.MAXMSGSIZE, max_bytes)
        secure(socket)
        socket.bind(address) if bind else socket.connect(address)
    except BaseException:
        socket.close(linger=0)
        raise
    return socket


def keepalive(socket: zmq.Socket) -> None:
    """ZMTP heartbeats: a peer silent for HEARTBEAT_TIMEOUT_MS is dropped, freeing its queue."""
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
    socket.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)
    socket.setsockopt(zmq.HEARTBEAT_TTL, HEARTBEAT_TIMEOUT_MS)


def bounded_queue(socket: zmq.Socket) -> None:
    """A server socket: at most FRONTEND_QUEUE requests queued per peer, and no pings of its own.

    libzmq 4.3 aborts the process (`!_io_error`, stream_engine_base.cpp) when this side's ping
    timer fires on a connection whose peer left while its queue was full, as a client that timed
    out does. A peer is still dropped when its own pings stop (their TTL) or its host goes (TCP
    keepalives); one that hangs with a full queue holds FRONTEND_QUEUE requests, which are served.
    """
    keepalive(socket)
    socket.setsockopt(zmq.HEARTBEAT_IVL, 0)
    socket.setsockopt(zmq.TCP_KEEPALIVE, 1)
    socket.setsockopt(zmq.TCP_KEEPALIVE_IDLE, HEARTBEAT_IVL_MS // 1000)
    socket.setsockopt(zmq.TCP_KEEPALIVE_INTVL, HEARTBEAT_IVL_MS // 1000)
    socket.setsockopt(zmq.TCP_KEEPALIVE_CNT, HEARTBEAT_TIMEOUT_MS // HEARTBEAT_IVL_MS)
    socket.setsockopt(zmq.RCVHWM, FRONTEND_QUEUE)


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
