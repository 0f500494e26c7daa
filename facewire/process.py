"""Run the server (`python -m facewire.serve`) as a child process on a free loopback port: for tests,
benchmarks and demos."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from facewire.serve.forkserver import SPARE_NAME
from facewire.wire.ping import answers_ping

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def is_spare(pid: int) -> bool:
    """Whether `pid` is a worker template's spare (by its name in /proc)."""
    try:
        return Path(f"/proc/{pid}/comm").read_bytes().strip() == SPARE_NAME
    except OSError:
        return False


class ServerProcess:
    """The server as a subprocess, its log captured to a file; ready when it answers ping."""

    def __init__(self, known_faces: Path, log_path: Path, *extra: str, ready_within: float = 120, wait: bool = True,
                 address: str | None = None):
        """Start the server; with wait=False, ready means its "ready on" log line (a broker with no workers)."""
        self.address = address or f"tcp://127.0.0.1:{free_port()}"
        self.log_path = Path(log_path)
        command = [sys.executable, "-m", "facewire.serve", "--known-faces", str(known_faces),
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

    def log_mark(self) -> int:
        """Where the log ends now: pass it to `wait_for_log` to look only at what comes after."""
        return self.log_path.stat().st_size

    def wait_for_log(self, text: str, since: int = 0, within: float = 30) -> str:
        """The log written after byte `since`, once it holds `text`; AssertionError after `within` seconds."""
        deadline = time.monotonic() + within
        while True:
            with open(self.log_path, "rb") as log:
                log.seek(since)
                written = log.read().decode(errors="replace")
            if text in written:
                return written
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not logged within {within} s; the log after the mark:\n{written}")
            time.sleep(0.05)

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
        """The local workers: forked by the template, which the server started (not its spare)."""
        return [pid for template in children(self.process.pid) for pid in children(template) if not is_spare(pid)]

    def spares(self) -> list[int]:
        """The template's spare: a worker made ready ahead of need (see serve/forkserver.py)."""
        return [pid for template in children(self.process.pid) for pid in children(template) if is_spare(pid)]

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
