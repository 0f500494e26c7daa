"""Run `server.py` as a child process on a free loopback port: for tests, benchmarks and demos."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import zmq

from . import protocol

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ping_reply(address: str, timeout_ms: int = 1000,
               secure: Callable[[zmq.Socket], None] | None = None) -> dict[str, Any] | None:
    """The body of a server's answer to a ping within the timeout, or None (quietly, one try)."""
    with zmq.Context.instance().socket(zmq.REQ) as socket:
        socket.setsockopt(zmq.LINGER, 0)
        if secure:
            secure(socket)
        socket.connect(address)
        socket.send_multipart(protocol.pack_request("ping"))
        return protocol.unpack_reply(socket.recv_multipart())[0] if socket.poll(timeout_ms) else None


def answers_ping(address: str, timeout_ms: int = 1000, secure: Callable[[zmq.Socket], None] | None = None) -> bool:
    """True if a server at `address` answers a ping within the timeout."""
    return ping_reply(address, timeout_ms, secure) is not None


def children(pid: int) -> list[int]:
    """Direct children of a process (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid:
            found.append(int(stat.parent.name))
    return found


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

    def processes(self) -> list[int]:
        """The server and every process below it (the worker template and the workers)."""
        found, todo = [], [self.process.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo += children(pid)
        return found

    def workers(self) -> list[int]:
        """The local workers: forked by the template, which the server started."""
        return [pid for template in children(self.process.pid) for pid in children(template)]

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
