"""Shared test fixtures: real server processes on free loopback ports, and the real client."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from facewire.client import Client, ServerUnavailable

ROOT = Path(__file__).resolve().parent.parent
SHARED_FACES = (ROOT.parent / "shared" / "data" / "faces").resolve()
REPO_KNOWN = ROOT / "known_faces"
REPO_PROBES = ROOT / "test_images"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`python server.py` as a subprocess, its log captured to a file."""

    def __init__(self, known_faces: Path, log_path: Path, *extra: str):
        self.address = f"tcp://127.0.0.1:{free_port()}"
        self.log_path = log_path
        command = [sys.executable, str(ROOT / "server.py"), "--known-faces", str(known_faces),
                   "--bind", self.address, *extra]
        with open(log_path, "w") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self._wait_ready()

    def _wait_ready(self, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                with Client(self.address, timeout=1, retries=0) as client:
                    client.ping()
                return
            except ServerUnavailable:
                continue
        self.stop()
        raise RuntimeError(f"server not ready in {seconds} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> int:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def run_client(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python client.py ARGS` and capture its output."""
    return subprocess.run([sys.executable, str(ROOT / "client.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def headless_env() -> dict[str, str]:
    """The current environment with no display, so the client never opens a window."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["PYTHONPATH"] = str(ROOT)
    return env


@pytest.fixture(scope="session")
def repo_gallery(tmp_path_factory) -> Path:
    """A copy of the repo's known_faces/, so tests never write a cache into the work tree."""
    target = tmp_path_factory.mktemp("repo") / "known_faces"
    shutil.copytree(REPO_KNOWN, target, ignore=shutil.ignore_patterns(".*"))
    return target


@pytest.fixture(scope="session")
def repo_server(repo_gallery, tmp_path_factory):
    server = ServerProcess(repo_gallery, tmp_path_factory.mktemp("logs") / "repo-server.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def shared_faces() -> Path:
    if not (SHARED_FACES / "labels.json").exists():
        pytest.skip(f"shared photos not found at {SHARED_FACES}")
    return SHARED_FACES


@pytest.fixture(scope="session")
def shared_server(shared_faces, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache") / "shared.npz"
    server = ServerProcess(shared_faces / "known", tmp_path_factory.mktemp("logs") / "shared-server.log",
                           "--cache", str(cache))
    yield server
    server.stop()
