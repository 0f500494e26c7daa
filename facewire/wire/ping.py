"""One quiet ping: whether a facewire server answers at an address, for readiness checks."""

from __future__ import annotations

from typing import Any

import zmq

from facewire.wire import protocol
from facewire.wire.transport import Secure, open_socket, plain


def ping_reply(address: str, timeout_ms: int = 1000, secure: Secure = plain) -> dict[str, Any] | None:
    """The body of a server's answer to a ping within the timeout, or None (one try, no retries)."""
    with open_socket(zmq.Context.instance(), zmq.REQ, address, secure=secure) as socket:
        if not socket.poll(timeout_ms, zmq.POLLOUT):  # no peer (a failed handshake): a send would block
            return None
        socket.send_multipart(protocol.pack_request("ping"))
        return protocol.unpack_reply(socket.recv_multipart())[0] if socket.poll(timeout_ms) else None


def answers_ping(address: str, timeout_ms: int = 1000, secure: Secure = plain) -> bool:
    """True if a server at `address` answers a ping within the timeout."""
    return ping_reply(address, timeout_ms, secure) is not None
