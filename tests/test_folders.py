"""Folders: recursive runs, CSV/JSON reports with errors listed, and a progress bar on a terminal."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import pty
import shutil
import struct
import subprocess
import sys
import termios

import pytest

from .conftest import REPO_PROBES, ROOT, run_client


@pytest.fixture
def folder(tmp_path):
    """The sample photos, one of them in a sub-folder, and a file that is not an image."""
    root = tmp_path / "photos"
    (root / "nested").mkdir(parents=True)
    shutil.copy(REPO_PROBES / "grace_hopper.jpg", root)
    shutil.copy(REPO_PROBES / "no_face.jpg", root)
    shutil.copy(REPO_PROBES / "group_small_faces.jpg", root / "nested")
    (root / "broken.png").write_bytes(b"\x89PNG not really")
    return root


def test_recursive_run_writes_a_csv_report(repo_server, folder, tmp_path):
    report = tmp_path / "out.csv"
    done = run_client("--server", repo_server.address, "--no-show", "-r", "--report", str(report), str(folder))
    assert done.returncode == 1  # the broken file is an error, but the run went on
    rows = list(csv.DictReader(report.open()))
    by_file = {}
    for row in rows:
        by_file.setdefault(os.path.basename(row["file"]), []).append(row)
    assert [r["name"] for r in by_file["grace_hopper.jpg"]] == ["grace_hopper"]
    assert sorted(r["name"] for r in by_file["group_small_faces.jpg"]) == ["Unknown", "grace_hopper"]
    assert by_file["no_face.jpg"][0]["name"] == "" and by_file["no_face.jpg"][0]["error"] == ""
    assert "not a readable image" in by_file["broken.png"][0]["error"]
    hopper = by_file["grace_hopper.jpg"][0]
    assert float(hopper["distance"]) < 0.6 and int(hopper["bottom"]) > int(hopper["top"])


def test_without_r_sub_folders_are_left_alone_and_json_reports_work(repo_server, folder, tmp_path):
    report = tmp_path / "out.json"
    done = run_client("--server", repo_server.address, "--no-show", "--report", str(report), str(folder))
    images = {os.path.basename(i["file"]): i for i in json.loads(report.read_text())}
    assert set(images) == {"grace_hopper.jpg", "no_face.jpg", "broken.png"}
    assert images["grace_hopper.jpg"]["faces"][0]["name"] == "grace_hopper"
    assert "error" in images["broken.png"] and done.returncode == 1


def test_a_progress_bar_on_a_terminal(repo_server, folder):
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal 100 wide
    done = subprocess.run([sys.executable, str(ROOT / "client.py"), "--server", repo_server.address, "--no-show",
                           "-r", str(folder)], stdout=subprocess.PIPE, stderr=follower, timeout=120)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert b"100%" in seen and b"4/4" in seen
    assert b"grace_hopper" in done.stdout
