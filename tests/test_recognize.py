"""Detection scaling, small and large faces, and vectorised matching."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import dlib
import numpy as np
import pytest

from facewire.faces import hog, images
from facewire.faces.boxes import smallest_face
from facewire.faces.detection import detect_faces, detect_faces_near
from facewire.faces.hog import HOG_MIN_FACE, PYRAMID_STEP, TRACKED_FACE
from facewire.faces.matching import UNKNOWN, confidence, match_faces
from facewire.faces.recognize import find_faces
from facewire.faces.settings import Box, DetectorSettings, MatchSettings

from .conftest import REPO_PROBES

SETTINGS = DetectorSettings()
HOG = DetectorSettings(detector="hog")


def bgr(name: str) -> np.ndarray:
    return images.read_image(REPO_PROBES / name)


def iou(a, b) -> float:
    (at, ar, ab, al), (bt, br, bb, bl) = a, b
    inter = max(0, min(ab, bb) - max(at, bt)) * max(0, min(ar, br) - max(al, bl))
    union = (ab - at) * (ar - al) + (bb - bt) * (br - bl) - inter
    return inter / union


def boxes_of(detections) -> list[tuple[int, int, int, int]]:
    return [detection.box for detection in detections]


def hog_scale(height: int, width: int, settings: DetectorSettings = HOG) -> float:
    """The scale hog.prepared resizes a height x width picture by."""
    picture = np.zeros((height, width), np.uint8)
    return hog.prepared(picture, smallest_face(height, width, settings), settings)[1]


def test_small_images_are_upscaled_and_large_ones_reduced():
    assert smallest_face(240, 427, SETTINGS) == pytest.approx(15)  # finds 15 px faces
    assert smallest_face(183, 275, SETTINGS) == pytest.approx(15)
    assert smallest_face(480, 853, SETTINGS) == pytest.approx(30)
    assert smallest_face(1080, 1920, SETTINGS) == pytest.approx(1080 / 16)
    assert smallest_face(3000, 4000, SETTINGS) > 150
    assert hog_scale(240, 427) == pytest.approx(HOG_MIN_FACE / 15)  # HOG scans 15 px faces at 60 px
    assert hog_scale(183, 275) == pytest.approx(HOG_MIN_FACE / 15)
    assert hog_scale(480, 853) == pytest.approx(HOG_MIN_FACE / 30)
    assert hog_scale(1080, 1920) == pytest.approx(HOG_MIN_FACE / (1080 / 16))
    assert hog_scale(3000, 4000) < 0.4


def test_faces_of_about_30_pixels_are_found():
    boxes = boxes_of(detect_faces(bgr("group_small_faces.jpg"), SETTINGS))
    assert len(boxes) == 2
    assert all(25 <= bottom - top <= 45 for top, _, bottom, _ in boxes)


def test_no_face_in_a_picture_of_coffee():
    assert find_faces(bgr("no_face.jpg"), SETTINGS) == []


def test_boxes_are_in_the_coordinates_of_the_image_sent():
    small = bgr("grace_hopper.jpg")
    large = cv2.resize(small, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    [small_box] = boxes_of(detect_faces(small, SETTINGS))
    [large_box] = boxes_of(detect_faces(large, SETTINGS))
    assert iou(tuple(4 * v for v in small_box), large_box) > 0.6
    height, width = large.shape[:2]
    top, right, bottom, left = large_box
    assert 0 <= top < bottom < height and 0 <= left < right < width


def test_fixed_upsample_matches_dlib_classic_behaviour():
    boxes = detect_faces(bgr("group_small_faces.jpg"), DetectorSettings(detector="hog", upsample=0))
    assert boxes == []  # 36 px faces need upsampling: the automatic rule provides it


def test_each_face_gets_an_encoding():
    faces = find_faces(bgr("group_small_faces.jpg"), SETTINGS)
    assert [face.encoding.shape for face in faces] == [(128,), (128,)]


def test_matching_equals_a_loop_over_the_gallery():
    generator = np.random.default_rng(0)
    known = generator.normal(size=(50, 128)) / 10
    faces = np.vstack([known[7] + 0.001, known[31] - 0.002, generator.normal(size=128)])
    names = [f"person{i // 2}" for i in range(50)]
    matches = match_faces(faces, known, names, MatchSettings(0.6))
    for face, match in zip(faces, matches):
        distances = [np.linalg.norm(face - k) for k in known]
        best = int(np.argmin(distances))
        assert match.distance == pytest.approx(distances[best], abs=1e-6)
        assert match.name == (names[best] if distances[best] <= 0.6 else UNKNOWN)
    assert [m.name for m in matches] == ["person3", "person15", UNKNOWN]


def test_matching_with_an_empty_gallery_says_unknown():
    [match] = match_faces(np.zeros((1, 128)), np.empty((0, 128)), [], MatchSettings(0.6))
    assert match.name == UNKNOWN and np.isnan(match.distance)


def test_knn_lets_several_photos_outvote_one_nearer_photo():
    base = np.zeros(128)
    known = np.vstack([base + 0.030, base + 0.031, base + 0.032, base - 0.025])  # 3 of ann, 1 nearer of bob
    names = ["ann", "ann", "ann", "bob"]
    face = base[None, :]
    assert match_faces(face, known, names, MatchSettings(0.6))[0].name == "bob"  # nearest photo wins by default
    [vote] = match_faces(face, known, names, MatchSettings(0.6, "knn", 4))
    assert vote.name == "ann" and vote.distance == pytest.approx(0.030 * np.sqrt(128))


def test_knn_says_unknown_when_no_neighbour_is_within_tolerance():
    known = np.eye(4, 128)
    [vote] = match_faces(np.full((1, 128), 5.0), known, ["a", "b", "c", "d"], MatchSettings(0.6, "knn"))
    assert vote.name == UNKNOWN and vote.confidence == 0.0


def test_confidence_is_one_half_at_the_tolerance():
    assert confidence(0.0, 0.6) == 1.0
    assert confidence(0.6, 0.6) == pytest.approx(0.5)
    assert confidence(0.3, 0.6) == pytest.approx(0.75)
    assert confidence(2.0, 0.6) == 0.0


@pytest.mark.parametrize("settings", [SETTINGS, HOG], ids=["mtcnn", "hog"])
def test_a_scan_near_known_boxes_finds_those_faces_where_a_full_scan_does_and_no_others(settings):
    """Region by region the resampling grid shifts a little, so a box may move by a pixel: it stays the same face."""
    group = images.read_image(REPO_PROBES / "group_small_faces.jpg")
    full = sorted(boxes_of(detect_faces(group, settings)), key=lambda box: box[3])
    assert len(full) == 2

    def same(found, expected):
        found = sorted(boxes_of(found), key=lambda box: box[3])
        return len(found) == len(expected) and all(iou(a, b) >= 0.85 for a, b in zip(found, expected))

    assert same(detect_faces_near(group, [full[0]], settings), [full[0]])
    assert same(detect_faces_near(group, full, settings), full)
    assert same(detect_faces_near(group, [full[1], full[1]], settings), [full[1]])  # overlapping regions: one face
    top, right, bottom, left = full[0]
    assert same(detect_faces_near(group, [(top + 4, right + 4, bottom + 4, left + 4)], settings), [full[0]])  # moved
    assert detect_faces_near(group, [], settings) == []


@pytest.mark.parametrize("face, whole", [(27, 22.5), (47, 22.5), (150, 60), (300, 120), (10, 60), (0, 40)])
def test_a_region_is_scanned_at_the_coarsest_level_of_the_pyramid_where_its_face_stays_large_enough(face, whole):
    """HOG scans a tracked face's region for faces of region_smallest_face px, i.e. at the scale
    HOG_MIN_FACE / that: a level of the whole picture's pyramid (scale HOG_MIN_FACE / whole, then PYRAMID_STEP
    coarser each level), the coarsest where the face is still TRACKED_FACE px wide."""
    scale = HOG_MIN_FACE / whole  # the whole picture's scan: 2.67, 2.67, 1, 0.5, 1, 1.5
    smallest = hog.region_smallest_face(face, whole)
    assert smallest >= whole  # never finer than the whole picture's scan
    chosen = HOG_MIN_FACE / smallest
    steps = round(math.log(chosen / scale) / math.log(PYRAMID_STEP))
    assert steps >= 0 and chosen == pytest.approx(scale * PYRAMID_STEP ** steps)  # a level of the whole scan's pyramid
    assert face * chosen >= TRACKED_FACE or steps == 0
    assert face * chosen * PYRAMID_STEP < TRACKED_FACE  # the next level would be too coarse


def dlib_boxes(image: np.ndarray, settings: DetectorSettings) -> tuple[list[Box], list[float]]:
    """The boxes and scores of dlib's own HOG detector (one call over its whole pyramid) on the picture
    hog.prepared makes of `image`, mapped back to `image` by hog.scaled_box; sorted by box."""
    height, width = image.shape[:2]
    work, scale, upsample = hog.prepared(image, smallest_face(height, width, settings), settings)
    rects, scores, _ = dlib.get_frontal_face_detector().run(work, upsample, 0.0)
    found = sorted((hog.scaled_box(rect, scale, height, width), score) for rect, score in zip(rects, scores))
    return [box for box, _ in found], [score for _, score in found]


def assert_hog_boxes_are_dlibs(paths: list[Path], monkeypatch) -> None:
    """`--detector hog` gives today's boxes: exactly dlib's own when its pyramid is scanned in one call, and,
    as a large picture is scanned (its pyramid in two halves), the same faces with boxes moved by no more than
    the rounding of one pixel of the scanned picture (test_split_scan.py)."""
    settings = DetectorSettings(detector="hog", detect_threads="1")
    for path in paths:
        image = images.read_image(path)
        height, width = image.shape[:2]
        expected, scores = dlib_boxes(image, settings)
        split = detect_faces(image, settings)
        assert hog.scan(image, smallest_face(height, width, settings), settings) == split
        scale = hog.prepared(image, smallest_face(height, width, settings), settings)[1]
        found = sorted(boxes_of(split))
        assert len(found) == len(expected), path.name
        assert all(max(abs(a - b) for a, b in zip(one, other)) <= 2 / scale + 1
                   for one, other in zip(found, expected)), (path.name, found, expected)
        with monkeypatch.context() as one_call:
            one_call.setattr(hog, "SPLIT_PIXELS", math.inf)
            whole = sorted(detect_faces(image, settings), key=lambda detection: detection.box)
        assert boxes_of(whole) == expected, path.name
        assert [detection.score for detection in whole] == pytest.approx(scores), path.name


def test_hog_gives_dlibs_own_boxes_on_the_repo_pictures(monkeypatch):
    paths = sorted(REPO_PROBES.glob("*.jpg"))
    assert len(paths) == 3
    assert_hog_boxes_are_dlibs(paths, monkeypatch)


def test_hog_gives_dlibs_own_boxes_on_the_shared_pictures(shared_faces, monkeypatch):
    paths = sorted((shared_faces / "test").glob("*.jpg"))
    assert len(paths) == 10
    assert_hog_boxes_are_dlibs(paths, monkeypatch)
