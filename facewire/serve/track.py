"""Track tokens: what the server vouches for about a face, signed so that a client cannot forge it.

A recognize reply gives each face a token: an HMAC-SHA256, under a secret of this server,
over the face's name, distance and box, the tolerance it was named under, and when the
server last encoded it. A video client sends the tokens back with the next frame; the
server reuses an identity only from a token that verifies and has not expired.
Token: base64url(JSON [name, distance, box, tolerance, seen]) "." base64url(HMAC).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Callable

from facewire.faces.decision import TRACKED
from facewire.faces.matching import Match, confidence
from facewire.faces.settings import Box
from facewire.wire.protocol import MAX_TOKEN_LENGTH

SECRET_ENV = "FACEWIRE_TRACK_SECRET"
"""A server passes its secret (hex) to its local workers in their environment: never on a command line."""
SECRET_BYTES = 32
TTL_SECONDS = 10.0
"""A token is valid this long after the server last *encoded* the face: reusing it does not renew it."""
_CONTEXT = b"facewire track v1\0"


@dataclass(frozen=True)
class Vouch:
    """What a token proves: this server named the face in `box` at time `seen` (unix seconds)."""

    name: str
    distance: float | None
    box: Box
    tolerance: float
    seen: float

    @classmethod
    def of(cls, match: Match, box: Box, tolerance: float, seen: float) -> Vouch:
        distance = None if math.isnan(match.distance) else round(match.distance, 4)
        return cls(match.name, distance, box, tolerance, seen)

    def match(self, tolerance: float) -> Match:
        distance = float("nan") if self.distance is None else self.distance
        return Match(self.name, distance, confidence(distance, tolerance), None, TRACKED)


@dataclass(frozen=True)
class Tracker:
    """Issues and verifies tokens under one secret; `clock` is injectable for tests."""

    secret: bytes = field(default_factory=lambda: secrets.token_bytes(SECRET_BYTES), repr=False)
    ttl: float = TTL_SECONDS
    clock: Callable[[], float] = time.time

    def issue(self, vouch: Vouch) -> str | None:
        """The token for `vouch` (None in the unlikely case it would exceed MAX_TOKEN_LENGTH)."""
        fields = [vouch.name, vouch.distance, list(vouch.box), vouch.tolerance, vouch.seen]
        payload = _b64(json.dumps(fields, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode())
        token = f"{payload}.{self._mac(payload)}"
        return token if len(token) <= MAX_TOKEN_LENGTH else None

    def verify(self, token: str) -> Vouch | None:
        """What `token` proves, or None if it is forged, altered, malformed or expired."""
        payload, _, mac = token.partition(".")
        if not token.isascii() or not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            name, distance, box, tolerance, seen = json.loads(base64.urlsafe_b64decode(payload))
            vouch = Vouch(name, distance, (box[0], box[1], box[2], box[3]), tolerance, seen)
        except (ValueError, TypeError, IndexError):
            return None
        return vouch if 0 <= self.clock() - vouch.seen <= self.ttl else None

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self.secret, _CONTEXT + payload.encode(), hashlib.sha256).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def server_secret() -> bytes:
    """$FACEWIRE_TRACK_SECRET, or a new random secret put there, so local workers started
    from now on inherit it; raises ValueError if it is set but not hex of 32 bytes or more."""
    value = os.environ.setdefault(SECRET_ENV, secrets.token_hex(SECRET_BYTES))
    try:
        secret = bytes.fromhex(value)
    except ValueError:
        secret = b""
    if len(secret) < SECRET_BYTES:
        raise ValueError(f"{SECRET_ENV} must be at least {2 * SECRET_BYTES} hex digits")
    return secret
