"""Detection scaling, small and large faces, and vectorised matching."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from facewire.faces import images
from facewire.faces.matching import UNKNOWN, confidence, match_faces
from facewire.faces.recognize import (
    HOG_MIN_FACE,
    PYRAMID_STEP,
    TRACKED_FACE,
    DetectorSettings,
    detect_faces,
    detect_faces_near,
    detection_scale,
    find_faces,
    region_scale,
)
from facewire.faces.settings import MatchSettings

from .conftest import REPO_PROBES

SETTINGS = DetectorSettings()


def bgr(name: str) -> np.ndarray:
    return images.read_image(REPO_PROBES / name)


def iou(a, b) -> float:
    (at, ar, ab, al), (bt, br, bb, bl) = a, b
    inter = max(0, min(ab, bb) - max(at, bt)) * max(0, min(ar, br) - max(al, bl))
    union = (ab - at) * (ar - al) + (bb - bt) * (br - bl) - inter
    return inter / union


def test_small_images_are_upscaled_and_large_ones_reduced():
    assert detection_scale(240, 427, SETTINGS) == pytest.approx(HOG_MIN_FACE / 15)  # finds 15 px faces
    assert detection_scale(183, 275, SETTINGS) == pytest.approx(HOG_MIN_FACE / 15)
    assert detection_scale(480, 853, SETTINGS) == pytest.approx(HOG_MIN_FACE / 30)
    assert detection_scale(1080, 1920, SETTINGS) == pytest.approx(HOG_MIN_FACE / (1080 / 16))
    assert detection_scale(3000, 4000, SETTINGS) < 0.4


def test_faces_of_about_30_pixels_are_found():
    boxes = detect_faces(bgr("group_small_faces.jpg"), SETTINGS)
    assert len(boxes) == 2
    assert all(25 <= bottom - top <= 45 for top, _, bottom, _ in boxes)


def test_no_face_in_a_picture_of_coffee():
    assert find_faces(bgr("no_face.jpg"), SETTINGS) == []


def test_boxes_are_in_the_coordinates_of_the_image_sent():
    small = bgr("grace_hopper.jpg")
    large = cv2.resize(small, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    [small_box] = detect_faces(small, SETTINGS)
    [large_box] = detect_faces(large, SETTINGS)
    assert iou(tuple(4 * v for v in small_box), large_box) > 0.6
    height, width = large.shape[:2]
    top, right, bottom, left = large_box
    assert 0 <= top < bottom < height and 0 <= left < right < width


def test_fixed_upsample_matches_dlib_classic_behaviour():
    boxes = detect_faces(bgr("group_small_faces.jpg"), DetectorSettings(upsample=0))
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


def test_a_scan_near_known_boxes_finds_those_faces_where_a_full_scan_does_and_no_others():
    """Region by region the resampling grid shifts a little, so a box may move by a pixel: it stays the same face."""
    group = images.read_image(REPO_PROBES / "group_small_faces.jpg")
    full = sorted(detect_faces(group, SETTINGS), key=lambda box: box[3])
    assert len(full) == 2

    def same(found, expected):
        found = sorted(found, key=lambda box: box[3])
        return len(found) == len(expected) and all(iou(a, b) >= 0.85 for a, b in zip(found, expected))

    assert same(detect_faces_near(group, [full[0]], SETTINGS), [full[0]])
    assert same(detect_faces_near(group, full, SETTINGS), full)
    assert same(detect_faces_near(group, [full[1], full[1]], SETTINGS), [full[1]])  # overlapping regions: one face
    top, right, bottom, left = full[0]
    assert same(detect_faces_near(group, [(top + 4, right + 4, bottom + 4, left + 4)], SETTINGS), [full[0]])  # moved
    assert detect_faces_near(group, [], SETTINGS) == []


@pytest.mark.parametrize("face, scale", [(27, 2.67), (47, 2.67), (150, 1.0), (300, 0.5), (10, 1.0), (0, 1.5)])
def test_a_region_is_scanned_at_the_coarsest_level_of_the_pyramid_where_its_face_stays_large_enough(face, scale):
    chosen = region_scale(face, scale)
    steps = round(math.log(chosen / scale) / math.log(PYRAMID_STEP))
    assert steps >= 0 and chosen == pytest.approx(scale * PYRAMID_STEP ** steps)  # a level of the whole scan's pyramid
    assert face * chosen >= TRACKED_FACE or steps == 0
    assert face * chosen * PYRAMID_STEP < TRACKED_FACE  # the next level would be too coarse
