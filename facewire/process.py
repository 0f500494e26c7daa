"""Run the server (`python -m facewire.serve`) and the HTTP gateway (`python -m facewire.http`) as child
processes on free loopback ports: for tests, benchmarks and demos."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Self

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


class LoggedProcess:
    """A subprocess whose output goes to a log file; stopped when the `with` block ends."""

    process: subprocess.Popen
    log_path: Path

    def _start(self, command: list[str], log_path: Path) -> None:
        self.log_path = Path(log_path)
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Signal the process and wait for it; kill it if it does not exit in 10 s."""
        if self.alive():
            self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class ServerProcess(LoggedProcess):
    """The server as a subprocess, its log captured to a file; ready when it answers ping."""

    def __init__(self, known_faces: Path, log_path: Path, *extra: str, ready_within: float = 120, wait: bool = True,
                 address: str | None = None):
        """Start the server; with wait=False, ready means its "ready on" log line (a broker with no workers)."""
        self.address = address or f"tcp://127.0.0.1:{free_port()}"
        self._start([sys.executable, "-m", "facewire.serve", "--known-faces", str(known_faces),
                     "--bind", self.address, *extra], log_path)
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

def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The HTTP status of a GET of `url`, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except (OSError, ValueError):
        return None


class GatewayProcess(LoggedProcess):
    """The HTTP gateway as a subprocess on a free loopback port, its log captured to a file.

    Ready when it answers HTTP (its OpenAPI description), whether or not its server answers."""

    def __init__(self, server: str, log_path: Path, *extra: str, ready_within: float = 60, bind: str | None = None):
        self.bind = bind or f"127.0.0.1:{free_port()}"
        self.url = f"http://{self.bind}"
        self._start([sys.executable, "-m", "facewire.http", "--server", server, "--bind", self.bind, *extra], log_path)
        self._wait_ready(ready_within)

    def _wait_ready(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"gateway exited with {self.process.returncode}:\n{self.log()}")
            if http_status(f"{self.url}/openapi.json", timeout=1) is not None:
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"gateway not ready in {seconds} s:\n{self.log()}")
