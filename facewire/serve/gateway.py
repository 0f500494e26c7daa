"""The HTTP gateway beside a server (`server.py --http HOST:PORT`): `python -m facewire.http` as a child
process, pointed at the server's own address, started again if it dies, stopped with the server."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from typing import Iterator

from facewire.config import Config, Gateway, Security

log = logging.getLogger(__name__)

YOUNG_EXIT_SECONDS = 5.0
"""A gateway that exits sooner than this after starting is started again after a growing delay."""
MAX_RESTART_DELAY = 30.0
WILDCARDS = {"0.0.0.0": "127.0.0.1", "*": "127.0.0.1", "[::]": "[::1]"}


def connectable(endpoint: str) -> str:
    """A bound ZeroMQ endpoint as this host connects to it: a wildcard host becomes loopback."""
    scheme, _, rest = endpoint.partition("://")
    host, colon, port = rest.rpartition(":")
    return f"{scheme}://{WILDCARDS.get(host, host)}{colon}{port}" if scheme == "tcp" else endpoint


def gateway_command(gateway: Gateway) -> list[str]:
    """The command line of the gateway `gateway` describes, started by and watching this process."""
    command = [sys.executable, "-m", "facewire.http", "--server", gateway.server, "--bind", gateway.bind,
               "--connections", str(gateway.connections), "--timeout", str(gateway.timeout),
               "--retries", str(gateway.retries), "--max-megapixels", repr(gateway.limits.max_pixels / 1e6),
               "--log-level", gateway.log_level, "--parent", str(os.getpid())]
    if gateway.security.key is not None and gateway.security.server_key is not None:
        command += ["--key", str(gateway.security.key), "--server-key", str(gateway.security.server_key)]
    if gateway.token_file is not None:
        command += ["--token-file", str(gateway.token_file)]
    for origin in gateway.cors:
        command += ["--cors", origin]
    return command


@contextmanager
def gateway_beside(config: Config, address: str) -> Iterator[None]:
    """For the block, the gateway of `config.http` (if any) as a client of this server, bound at `address`.

    With --keys it uses the server's own key pair, which the server always admits."""
    if config.http is None:
        yield
        return
    keys = config.security.keys
    security = Security(key=keys / "server.key_secret", server_key=keys / "server.key") if keys else Security()
    child = GatewayChild(gateway_command(replace(config.http, server=connectable(address), security=security)))
    try:
        yield
    finally:
        child.stop()


class GatewayChild:
    """A gateway process, started again when it exits (after 1, 2, 4... s if it keeps dying young)."""

    def __init__(self, command: list[str]):
        self.command = command
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.process, self.started = self._start()
        self.thread = threading.Thread(target=self._watch, name="http-gateway", daemon=True)
        self.thread.start()

    def _start(self) -> tuple[subprocess.Popen, float]:
        process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL)
        log.info("HTTP gateway started (pid %d) on %s", process.pid, self.command[self.command.index("--bind") + 1])
        return process, time.monotonic()

    def _watch(self) -> None:
        delay = 0.0
        while True:
            status = self.process.wait()
            if self.stopping.is_set():
                return
            young = time.monotonic() - self.started < YOUNG_EXIT_SECONDS
            delay = min(MAX_RESTART_DELAY, max(1.0, 2 * delay)) if young else 1.0
            log.warning("the HTTP gateway (pid %d) exited with %s; starting another in %.0f s",
                        self.process.pid, status, delay)
            if self.stopping.wait(delay):
                return
            with self.lock:
                if self.stopping.is_set():
                    return
                self.process, self.started = self._start()

    def stop(self, grace: float = 10) -> None:
        """SIGTERM the gateway, SIGKILL it after `grace` seconds; no new one is started."""
        with self.lock:
            self.stopping.set()
            process = self.process
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        self.thread.join()
        log.info("HTTP gateway stopped")
