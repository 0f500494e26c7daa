"""`pip install .` gives working commands: facewire-server (with its workers), facewire-client and
facewire-http (with its web pages), run from a folder that is not the repo, importing the installed copy."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sysconfig
import time
import urllib.request
import venv
from pathlib import Path

import pytest

from facewire.process import free_port, http_status

from .conftest import REPO_KNOWN, REPO_PROBES, ROOT, headless_env

WAIT = 180.0


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with facewire pip-installed from a copy of the repo; its bin folder.

    The copy keeps pip's build files out of the repo. pip builds it as for any user (setuptools from
    PyPI); the third-party packages come from the test's own environment (a .pth file), so that what
    is checked is facewire itself, not a 100 MB download."""
    base = tmp_path_factory.mktemp("install")
    source = base / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "facewire", source / "facewire", ignore=shutil.ignore_patterns("__pycache__"))
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "facewire-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run([python, "-m", "pip", "install", "--no-deps", "--quiet", str(source)],
                          capture_output=True, text=True, cwd=base)
    assert done.returncode == 0, done.stdout + done.stderr
    return env_dir / "bin"


def test_pip_install_gives_a_server_with_workers_and_a_client_that_work_from_anywhere(installed, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run([installed / "python", "-c", "import facewire; print(facewire.__file__)"], cwd=elsewhere,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(installed.parent)) and not where.startswith(str(ROOT)), where

    address = f"tcp://127.0.0.1:{free_port()}"
    log_path = tmp_path / "server.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen([installed / "facewire-server", "--known-faces", str(REPO_KNOWN), "--bind", address,
                                   "--workers", "2", "--db", f"sqlite:///{tmp_path / 'cache.db'}"],
                                  cwd=elsewhere, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + WAIT
        while "ready on" not in log_path.read_text():
            assert server.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        done = subprocess.run([installed / "facewire-client", "--server", address, "--json", "--no-show",
                               str(REPO_PROBES / "grace_hopper.jpg"), str(REPO_PROBES / "group_small_faces.jpg")],
                              cwd=elsewhere, env=headless_env(), capture_output=True, text=True, timeout=WAIT)
        assert done.returncode == 0, done.stderr
        names = [sorted(face["name"] for face in json.loads(line)["faces"]) for line in done.stdout.splitlines()]
        assert names == [["grace_hopper"], ["Unknown", "grace_hopper"]]
        ping = subprocess.run([installed / "facewire-client", "--server", address, "--ping"], cwd=elsewhere,
                              capture_output=True, text=True, timeout=WAIT)
        assert ping.returncode == 0 and json.loads(ping.stdout)["people"] >= 1, ping.stderr
    finally:
        server.terminate()
        status = server.wait(timeout=30)
    log = log_path.read_text()
    assert status == 0 and "2 local workers" in log and log.count("worker 0 started") == 1, log
    assert "stopped" in log and "Traceback" not in log, log


def test_pip_install_gives_the_http_gateway_with_its_pages(installed, tmp_path):
    static = subprocess.run([installed / "python", "-c", "from facewire.http.app import STATIC; print(STATIC)"],
                            cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()
    assert static.startswith(str(installed.parent)), static
    assert {"index.html", "gallery.html", "live.html", "facewire.js", "style.css"} <= \
           {path.name for path in Path(static).iterdir()}
    url = f"http://127.0.0.1:{free_port()}"
    gateway = subprocess.Popen([installed / "facewire-http", "--server", f"tcp://127.0.0.1:{free_port()}",
                                "--bind", url.removeprefix("http://")], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + WAIT
        while http_status(url + "/") != 200:
            assert gateway.poll() is None and time.monotonic() < deadline, "facewire-http did not serve its page"
            time.sleep(0.1)
        for path, marker in (("/", b'id="photo"'), ("/live", b'id="view"'), ("/static/live.js", b"getUserMedia")):
            with urllib.request.urlopen(url + path, timeout=10) as response:
                assert marker in response.read(), path
    finally:
        gateway.terminate()
        assert gateway.wait(timeout=30) == -signal.SIGTERM  # uvicorn shuts down, then re-raises the signal


def test_the_top_level_scripts_are_thin_shims():
    for script in ("server.py", "client.py"):
        lines = (ROOT / script).read_text().splitlines()
        assert len(lines) <= 40, f"{script} has {len(lines)} lines"
