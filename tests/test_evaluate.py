"""python -m facewire.evaluate: the tolerance table, on the shared photos and on the samples."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

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


def percentages(text: str) -> list[float]:
    return [float(value) / 100 for value in re.findall(r"([\d.]+(?:e-?\d+)?)% of strangers get a name", text)]


def test_strangers_are_counted_and_their_false_names_projected_as_one_minus_one_minus_p_to_the_n(shared_faces,
                                                                                                 shared_detect):
    done = evaluate(shared_faces / "known", shared_faces / "test", shared_faces / "labels.json", "--from", "0.6",
                    "--to", "0.6", "--decision", "nearest", "--strangers", shared_detect)
    assert done.returncode == 0, done.stderr
    assert "| 0.60 | nearest | 100% | 13/13 | 0 | 0 |" in done.stdout and "| 0.60 | margin |" in done.stdout
    faces = int(re.search(r"strangers: (\d+) faces \((\d+) in --strangers, 9 gallery photos", done.stdout).group(1))
    assert faces > 40 and "named under nearest within 0.6: 0 (0%)" in done.stdout
    assert "fitted to the lower half of" in done.stdout  # enough distances to fit: 5 people x 42 faces, and more
    p = float(re.search(r"p\(0.6\) = ([\d.e+-]+)", done.stdout).group(1))
    rates = percentages(done.stdout)
    assert len(rates) == 4 and rates == sorted(rates) and rates[0] < 0.05
    for people, rate in zip((5, 1_000, 10_000, 100_000), rates):
        assert rate == pytest.approx(1 - (1 - p) ** people, rel=0.02, abs=1e-4)


@pytest.mark.parametrize("decision", ["margin", "nearest"])
def test_the_recommended_tolerance_keeps_the_projected_rate_under_the_target(shared_faces, decision):
    done = evaluate(shared_faces / "known", shared_faces / "test", shared_faces / "labels.json", "--from", "0.6",
                    "--to", "0.6", "--decision", decision, "--max-false-name-rate", "0.01")
    assert done.returncode == 0, done.stderr
    assert "the built-in model (36 distances are fewer than 100 to fit)" in done.stdout  # the gallery crosswise only
    rows = re.findall(r"\| (\d+)(?: \(this gallery\))? \| ([\d.]+) \| ([\d.]*) \| ([\d.e-]+)% \| (\d+)/13 \|",
                      done.stdout)
    assert [int(people) for people, *_ in rows] == [5, 1_000, 10_000, 100_000]
    tolerances = [float(tolerance) for _, tolerance, *_ in rows]
    assert tolerances == sorted(tolerances, reverse=True) and tolerances[-1] > 0.3  # stricter as the gallery grows
    assert all(float(projected) <= 1.0 for *_, projected, _ in rows)
    assert all(bool(ceiling) == (decision == "margin") for _, _, ceiling, _, _ in rows)
