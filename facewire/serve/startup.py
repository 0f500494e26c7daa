"""What every server process does as it starts: logging, stop signals, the track-token secret, the
server's keys, a first look at the gallery database.

Nothing here imports dlib or ONNX Runtime: a supervisor, which never recognises a face itself,
starts its worker template a fraction of a second sooner for it.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType

from facewire.config import Config
from facewire.serve.track import Tracker, server_secret
from facewire.store.backends import DatabaseError
from facewire.store.database import open_database
from facewire.wire.keys import KeysError, NoKeys, ServerKeys, load_server_keys
from facewire.wire.transport import is_public

log = logging.getLogger(__name__)


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")


class StopEvent(threading.Event):
    """The event that SIGINT and SIGTERM set (see `stop_on_signals`), with a file descriptor that turns
    readable as the signal arrives.

    A loop that waits in a ZeroMQ poll registers `fileno()` with it: pyzmq resumes a poll that a
    signal interrupts, so without it the loop would see the event only at the poll's timeout."""

    def __init__(self) -> None:
        super().__init__()
        self._setting = False
        self._readable, self.wakeup_fd = os.pipe()
        for fd in (self._readable, self.wakeup_fd):
            os.set_blocking(fd, False)

    def fileno(self) -> int:
        return self._readable

    def set(self) -> None:
        self._setting = True
        super().set()

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        """The signal handler: sets the event unless `set` has begun already. `set` holds a lock, and a
        signal that arrives meanwhile runs this handler inside it: a second `set` would wait for that
        lock forever."""
        if not self._setting:
            self.set()


def stop_on_signals() -> StopEvent:
    """An event set by SIGINT or SIGTERM: every serving loop checks it (and polls its `fileno`)."""
    stop = StopEvent()
    signal.set_wakeup_fd(stop.wakeup_fd)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop.on_signal)
    return stop


def tracker() -> Tracker:
    """The track-token signer, under the server's secret (local workers inherit it in their environment)."""
    try:
        return Tracker(server_secret())
    except ValueError as exc:
        raise SystemExit(str(exc)) from None


def check_gallery_db(config: Config) -> None:
    """Open the gallery database once (creating it if need be), or exit with what is wrong with it."""
    try:
        open_database(config.gallery_db()).close()
    except DatabaseError as exc:
        raise SystemExit(f"cannot use the gallery database: {exc}") from None


def server_keys(config: Config) -> ServerKeys | NoKeys:
    """The server's keys (or PLAIN, with a warning when its address is public); exits if they cannot be read."""
    if config.security.keys is None and is_public(config.bind):
        log.warning("!!! %s is reachable from other hosts and has no CURVE: anyone there can query "
                    "the gallery and read images on the wire. Use --keys DIR (see README, Security).", config.bind)
    try:
        keys = load_server_keys(config.security.keys)
    except KeysError as exc:
        raise SystemExit(str(exc)) from None
    if config.security.keys is not None:
        log.info("CURVE on: admitting the keys in %s, and in %s as editors", keys.authorized, keys.editors)
    return keys
