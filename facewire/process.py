"""Run `server.py` as a child process on a free loopback port: for tests, benchmarks and demos."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import zmq

from . import protocol

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers_ping(address: str, timeout_ms: int = 1000, secure: Callable[[zmq.Socket], None] | None = None) -> bool:
    """True if a server at `address` answers a ping within the timeout (quietly, one try)."""
    with zmq.Context.instance().socket(zmq.REQ) as socket:
        socket.setsockopt(zmq.LINGER, 0)
        if secure:
            secure(socket)
        socket.connect(address)
        socket.send_multipart(protocol.pack_request("ping"))
        return bool(socket.poll(timeout_ms)) and socket.recv_multipart() is not None


class ServerProcess:
    """`python server.py` as a subprocess, its log captured to a file; ready when it answers ping."""

    def __init__(self, known_faces: Path, log_path: Path, *extra: str, ready_within: float = 120, wait: bool = True,
                 address: str | None = None):
        """Start the server; with wait=False, ready means its "ready on" log line (a broker with no workers)."""
        self.address = address or f"tcp://127.0.0.1:{free_port()}"
        self.log_path = Path(log_path)
        command = [sys.executable, str(ROOT / "server.py"), "--known-faces", str(known_faces),
                   "--bind", self.address, *extra]
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready(ready_within, wait)

    def _wait_ready(self, seconds: float, ping: bool) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            if answers_ping(self.address) if ping else "ready on" in self.log():
                return
            time.sleep(0 if ping else 0.1)
        self.stop()
        raise RuntimeError(f"server not ready in {seconds} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Signal the server and wait for it; kill it if it does not exit in 10 s."""
        if self.alive():
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
