"""python -m facewire.evaluate: the tolerance table, on the shared photos and on the samples."""

from __future__ import annotations

import json
import subprocess
import sys

from .conftest import REPO_KNOWN, REPO_PROBES, ROOT


def evaluate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facewire.evaluate", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_the_shared_photos_are_all_right_at_the_default_tolerance(shared_faces):
    done = evaluate(shared_faces / "known", shared_faces / "test", shared_faces / "labels.json")
    assert done.returncode == 0, done.stderr
    assert "| 0.60 | nearest | 100% | 13/13 | 0 | 0 |" in done.stdout
    assert "| 0.30 | nearest | 100%" not in done.stdout  # too strict a tolerance misses people


def test_an_unknown_face_given_a_name_counts_as_wrong(tmp_path):
    before = sorted((p.name, p.stat().st_mtime_ns) for p in REPO_KNOWN.iterdir())
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"group_small_faces.jpg": ["grace_hopper", "unknown"],
                                  "grace_hopper.jpg": ["grace_hopper"], "no_face.jpg": []}))
    done = evaluate(REPO_KNOWN, REPO_PROBES, labels, "--from", "0.5", "--to", "0.7", "--step", "0.2")
    assert done.returncode == 0, done.stderr
    assert "| 0.50 | nearest | 100% | 2/2 | 0 | 0 |" in done.stdout
    assert "| 0.70 | nearest | 100% | 2/2 | 1 | 0 |" in done.stdout  # Collins (0.62 away) named Hopper
    assert sorted((p.name, p.stat().st_mtime_ns) for p in REPO_KNOWN.iterdir()) == before  # nothing written


def test_labelled_photos_that_are_missing_are_named(tmp_path):
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"nowhere.jpg": ["x"]}))
    done = evaluate(REPO_KNOWN, REPO_PROBES, labels)
    assert done.returncode != 0 and "nowhere.jpg" in done.stderr
