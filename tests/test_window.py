"""The client's window, on a real X display (Xvfb), driven with xdotool like a person would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from facewire.process import ServerProcess

from .conftest import REPO_PROBES, ROOT

pytestmark = pytest.mark.skipif(
    not (shutil.which("Xvfb") and shutil.which("xdotool")), reason="needs Xvfb and xdotool (apt-get install xvfb xdotool)"
)


@pytest.fixture
def display():
    """A virtual X display; Xvfb picks a free number and writes it to stdout."""
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", "1", "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    yield ":" + xvfb.stdout.readline().strip()
    xvfb.terminate()
    xvfb.wait()


def find_window(title: str, env: dict[str, str], seconds: float = 30) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = subprocess.run(["xdotool", "search", "--name", title], env=env, capture_output=True, text=True)
        if found.stdout.strip():
            return found.stdout.split()[0]
        time.sleep(0.2)
    raise AssertionError(f"no window titled {title!r} appeared")


def start_client(args: list, cwd, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "client.py"), *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def press_q(window: str, env: dict[str, str]) -> None:
    """Focus the window and press q, as a person would."""
    subprocess.run(["xdotool", "windowfocus", "--sync", window], env=env, check=True)
    subprocess.run(["xdotool", "key", "q"], env=env, check=True)


def test_client_shows_the_labelled_image_and_q_quits(repo_server, display, tmp_path):
    env = {**os.environ, "DISPLAY": display}
    client = start_client(["--server", repo_server.address, REPO_PROBES / "grace_hopper.jpg",
                           REPO_PROBES / "no_face.jpg"], tmp_path, env)
    try:
        window = find_window("facewire: grace_hopper.jpg", env)
        time.sleep(0.5)
        assert client.poll() is None  # waiting for a key, as a viewer should
        press_q(window, env)
        out, err = client.communicate(timeout=20)
    finally:
        client.kill()
    assert client.returncode == 0, err
    assert out.strip().endswith("grace_hopper.jpg: grace_hopper")  # q stopped before the second image
    assert not (tmp_path / "facewire-output").exists()  # shown, not saved
    assert "QFontDatabase" not in err


def test_video_plays_live_in_a_window_and_q_stops_it(shared_faces, display, tmp_path):
    env = {**os.environ, "DISPLAY": display}
    with ServerProcess(shared_faces / "video", tmp_path / "server.log", "--db", f"sqlite:///{tmp_path / 'c.db'}") as server:
        client = start_client(["--server", server.address, "--video",
                               shared_faces / "video" / "short_hamilton_clip.mp4"], tmp_path, env)
        try:
            window = find_window("facewire video", env)
            time.sleep(1.0)
            press_q(window, env)
            _, err = client.communicate(timeout=30)
        finally:
            client.kill()
    assert client.returncode == 0, err
    answered = int(err.split("video: ")[1].split(" frames")[0])
    assert 0 < answered < 275  # stopped early by q
