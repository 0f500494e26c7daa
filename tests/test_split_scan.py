"""The HOG scan on two threads: the pyramid's fine levels here, its coarse ones on a helper thread,
only when a core is idle; the same faces as dlib's one call."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import time

import cv2
import dlib
import numpy as np
import pytest

from facewire.faces import hog, images, machine_load
from facewire.faces.detection import detect_faces
from facewire.faces.hog import fine_levels_detector, hog_detector
from facewire.faces.settings import DetectorSettings

from .conftest import REPO_PROBES

FINE_FACE = 96
"""Largest box (px) dlib's HOG detector gives at the first two levels of its pyramid (80 / (5/6))."""


def mosaic(photos: list[np.ndarray]) -> np.ndarray:
    """Group pictures: the photos as tiles of falling sizes, so that faces land on every level."""
    rows = []
    for tile in (480, 240, 160, 120):
        cells = [cv2.resize(photo, (tile, tile), interpolation=cv2.INTER_AREA) for photo in photos[:960 // tile]]
        cells += [np.zeros_like(cells[0])] * (960 // tile - len(cells))
        rows.append(np.hstack(cells))
    return np.vstack(rows)


@pytest.fixture(scope="module")
def pictures(shared_faces) -> list[np.ndarray]:
    """Grey pictures as hog.scan gives them to dlib: the shared photos at 960 px, and two mosaics."""
    photos = [images.to_grey(images.read_image(path)) for path in sorted((shared_faces / "test").glob("*.jpg"))]
    portraits = [images.to_grey(images.read_image(path)) for path in sorted((shared_faces / "known").rglob("*.jpg"))]
    at_960 = [cv2.resize(photo, None, fx=960 / min(photo.shape), fy=960 / min(photo.shape)) for photo in photos]
    return at_960 + [mosaic(portraits), mosaic(portraits[::-1])]


def boxes(rects) -> list[tuple[int, int, int, int]]:
    return sorted((r.left(), r.top(), r.right(), r.bottom()) for r in rects)


def rects(scored) -> list[dlib.rectangle]:
    """The rectangles of _in_two_halves' (score, rectangle) pairs."""
    return [rect for _, rect in scored]


def same_faces(found, expected) -> bool:
    """The same boxes, give or take the pixel that rounding from another pyramid level moves them."""
    return len(found) == len(expected) and all(
        max(abs(a - b) for a, b in zip(one, other)) <= 2 for one, other in zip(boxes(found), boxes(expected)))


def test_the_split_scan_finds_every_face_one_scan_finds_on_fine_and_coarse_levels(pictures):
    fine = coarse = 0
    for picture in pictures:
        expected = hog_detector()(picture, 0)
        halves = rects(hog._in_two_halves(picture, parallel=True))
        assert same_faces(halves, expected)
        assert boxes(rects(hog._in_two_halves(picture, parallel=False))) == boxes(halves)
        sizes = [rect.width() for rect in expected]
        fine += sum(size <= FINE_FACE for size in sizes)
        coarse += sum(size > FINE_FACE for size in sizes)
    assert fine >= 5 and coarse >= 10  # both threads' halves of the pyramid had faces to find


def test_the_fine_levels_detector_stops_after_two_levels(pictures):
    """It finds every small face of a whole scan (and some that a bigger box there hides) and no bigger one."""
    for picture in pictures:
        small = boxes(rect for rect in hog_detector()(picture, 0) if rect.width() <= FINE_FACE)
        found = fine_levels_detector()(picture, 0)
        assert set(small) <= set(boxes(found))
        assert all(rect.width() <= FINE_FACE for rect in found)


def test_two_boxes_of_one_face_are_merged_as_dlib_merges_them():
    same = hog._same_face
    assert same(dlib.rectangle(0, 0, 99, 99), dlib.rectangle(10, 10, 109, 109))  # IoU 0.67
    assert not same(dlib.rectangle(0, 0, 99, 99), dlib.rectangle(40, 40, 139, 139))  # IoU 0.22
    assert same(dlib.rectangle(0, 0, 119, 119), dlib.rectangle(10, 10, 89, 89))  # inside: IoU 0.44, covered
    assert not same(dlib.rectangle(0, 0, 119, 119), dlib.rectangle(60, 60, 139, 139))  # 56% covered
    assert not same(dlib.rectangle(0, 0, 9, 9), dlib.rectangle(20, 20, 29, 29))


def test_of_two_overlapping_detections_the_better_one_is_kept(monkeypatch):
    near, far = dlib.rectangle(0, 0, 95, 95), dlib.rectangle(300, 300, 395, 395)

    class Detector:
        def __init__(self, found):
            self.found = found

        def run(self, picture, upsample, threshold):
            rects, scores = zip(*self.found) if self.found else ((), ())
            return list(rects), list(scores), [0] * len(rects)

    coarse = dlib.rectangle(1, 1, 66, 66)  # rect_up twice: about (1, 1, 95, 95), the same face as `near`
    monkeypatch.setattr(hog, "fine_levels_detector", lambda: Detector([(near, 0.5), (far, 0.1)]))
    monkeypatch.setattr(hog, "hog_detector", lambda: Detector([(coarse, 0.9)]))
    kept = hog._in_two_halves(np.zeros((480, 480), np.uint8), parallel=True)
    assert len(kept) == 2 and kept[1] == (0.1, far) and kept[0][0] == 0.9
    assert kept[0][1] != near and hog._same_face(kept[0][1], near)
    monkeypatch.setattr(hog, "hog_detector", lambda: Detector([(coarse, 0.2)]))
    assert hog._in_two_halves(np.zeros((480, 480), np.uint8), parallel=False) == [(0.5, near), (0.1, far)]


@pytest.mark.parametrize("settings, size, idle, halves", [
    (DetectorSettings(detector="hog"), 960, True, [True]),
    (DetectorSettings(detector="hog"), 960, False, [False]),
    (DetectorSettings(detector="hog", detect_threads="2"), 960, False, [True]),
    (DetectorSettings(detector="hog", detect_threads="1"), 960, True, [False]),
    (DetectorSettings(detector="hog"), 300, True, []),  # too small to be worth it: 300x300 < SPLIT_PIXELS
    (DetectorSettings(detector="hog", detect_threads="2"), 300, True, []),
])
def test_a_large_picture_is_scanned_in_halves_in_parallel_only_when_asked_or_a_core_is_idle(
        monkeypatch, settings, size, idle, halves):
    calls = []
    monkeypatch.setattr(machine_load, "FRESH_SECONDS", 0)  # no answer of an earlier test's
    monkeypatch.setattr(machine_load, "idle_core", lambda: idle)
    monkeypatch.setattr(hog, "_in_two_halves", lambda work, parallel: calls.append(parallel) or [])
    hog.scan(np.zeros((size, size), np.uint8), hog.HOG_MIN_FACE, settings)  # scale 1: scanned at its own size
    assert calls == halves


@pytest.mark.parametrize("elsewhere, idle", [([0], True), ([1, 1, 1, 1], False), ([2, 1, 0], True), ([1, 1, 1, 1, 0], False)])
def test_a_core_is_idle_when_one_of_four_looks_finds_no_other_thread_runnable(monkeypatch, elsewhere, idle):
    looks = iter(elsewhere)
    monkeypatch.setattr(machine_load, "_runnable_elsewhere", lambda: next(looks))
    monkeypatch.setattr(machine_load.os, "sched_getaffinity", lambda pid: {0, 1})
    assert machine_load.idle_core() == idle


def test_the_threads_of_this_process_are_not_counted_as_elsewhere(monkeypatch):
    monkeypatch.setattr(machine_load, "_runnable_on_machine", lambda: 50)
    monkeypatch.setattr(machine_load, "_task_state", lambda task: "R")
    assert machine_load._runnable_elsewhere() == 50 - len(machine_load.os.listdir("/proc/self/task"))


def test_an_unreadable_proc_means_busy(monkeypatch):
    def unreadable():
        raise OSError("no /proc")

    monkeypatch.setattr(machine_load, "_runnable_on_machine", unreadable)
    assert not machine_load.idle_core()


def test_busy_cores_are_seen_as_busy():
    cores = len(machine_load.os.sched_getaffinity(0))
    loops = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(cores)]
    try:
        deadline = time.monotonic() + 30
        while machine_load._runnable_elsewhere() < cores and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not machine_load.idle_core()
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()


def _split_in_child(queue) -> None:
    picture = images.to_grey(images.read_image(REPO_PROBES / "grace_hopper.jpg"))
    queue.put(len(hog._in_two_halves(cv2.resize(picture, None, fx=2, fy=2), parallel=True)))


def test_a_forked_child_gets_a_helper_thread_of_its_own():
    picture = images.to_grey(images.read_image(REPO_PROBES / "grace_hopper.jpg"))
    assert len(hog._in_two_halves(cv2.resize(picture, None, fx=2, fy=2), parallel=True)) == 1  # its helper
    queue = multiprocessing.get_context("fork").Queue()
    child = multiprocessing.get_context("fork").Process(target=_split_in_child, args=(queue,))
    child.start()
    try:
        assert queue.get(timeout=60) == 1  # the parent's helper thread is not in the child: it would wait forever
    finally:
        child.join(timeout=10)
        child.kill()


def test_detection_on_two_threads_gives_the_boxes_of_one():
    for name in ("grace_hopper.jpg", "group_small_faces.jpg"):
        image = images.read_image(REPO_PROBES / name)
        one = detect_faces(image, DetectorSettings(detector="hog", detect_threads="1"))
        two = detect_faces(image, DetectorSettings(detector="hog", detect_threads="2"))
        assert one == two and len(one) > 0  # the same halves (boxes and scores), whichever thread ran them
