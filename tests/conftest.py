"""Shared test fixtures: real server processes on free loopback ports, and the real client."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from facewire.process import ROOT, ServerProcess

SHARED_FACES = (ROOT.parent / "shared" / "data" / "faces").resolve()
SHARED_DETECT = (ROOT.parent / "shared" / "data" / "detect").resolve()
REPO_KNOWN = ROOT / "known_faces"
REPO_PROBES = ROOT / "test_images"


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


def everyone_gallery(target: Path) -> Path:
    """The repo's known_faces/ copied to `target`, plus, when present, the shared people (linked, never copied)."""
    shutil.copytree(REPO_KNOWN, target, ignore=shutil.ignore_patterns(".*", "*.md"))
    shared = SHARED_FACES / "known"
    for person in sorted(shared.iterdir()) if shared.is_dir() else []:
        if person.is_dir() and not person.name.startswith("."):
            (target / person.name).symlink_to(person)
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
def shared_detect() -> Path:
    """dlib's detection test set: nine group photos and their hand-labelled boxes (imglab XML)."""
    if not (SHARED_DETECT / "testing.xml").exists():
        pytest.skip(f"shared detection photos not found at {SHARED_DETECT}")
    return SHARED_DETECT


@pytest.fixture(scope="session")
def shared_server(shared_faces, tmp_path_factory):
    database = tmp_path_factory.mktemp("db") / "shared.db"
    server = ServerProcess(shared_faces / "known", tmp_path_factory.mktemp("logs") / "shared-server.log",
                           "--db", f"sqlite:///{database}")
    yield server
    server.stop()
