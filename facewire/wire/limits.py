"""Size limits of the wire protocol, importable without numpy (the supervisor only passes them on)."""

from __future__ import annotations

from dataclasses import dataclass

MAX_HEADER_BYTES = 64 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
CHANNELS = (1, 3, 4)


@dataclass(frozen=True)
class Limits:
    """Size limits; `max_frame_bytes` is what the transport should cap each frame at."""

    max_pixels: int = DEFAULT_MAX_PIXELS

    @property
    def max_frame_bytes(self) -> int:
        return self.max_pixels * max(CHANNELS) + MAX_HEADER_BYTES


TRUSTED_REPLY_LIMITS = Limits(max_pixels=2**62)
"""The client checks a reply's shape against its buffer, but not its size: it asked for it."""
