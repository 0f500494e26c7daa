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
