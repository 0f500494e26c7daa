"""Socket options every facewire socket shares: heartbeats, so a dead peer is noticed."""

from __future__ import annotations

import zmq

HEARTBEAT_IVL_MS = 2000
HEARTBEAT_TIMEOUT_MS = 6000
FRONTEND_QUEUE = 4
"""Requests queued per client at the server; past it ZeroMQ stops reading that client (back-pressure)."""


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
