"""Naming encodings against a gallery (facewire.matching), on hand-made 128-d vectors: no dlib needed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facewire.faces.decision import Nearest
from facewire.faces.index import FaceIndex
from facewire.faces.matching import (
    FIRST_K,
    UNKNOWN,
    Match,
    confidence,
    distance_matrix,
    match_faces,
    nearest_people,
)
from facewire.faces.settings import MatchSettings


def at(*coordinates: float) -> np.ndarray:
    """A 128-d encoding with the given leading coordinates (the rest 0)."""
    vector = np.zeros(128)
    vector[:len(coordinates)] = coordinates
    return vector


def gallery(*points: tuple[float, ...]) -> np.ndarray:
    return np.array([at(*p) for p in points])


# --- confidence -----------------------------------------------------------------------------------

@pytest.mark.parametrize("distance, expected", [(0.0, 1.0), (0.15, 0.875), (0.3, 0.75), (0.6, 0.5), (0.9, 0.25),
                                                (1.2, 0.0), (1.5, 0.0), (7.0, 0.0)])
def test_confidence_falls_linearly_from_one_to_zero_at_twice_the_tolerance(distance, expected):
    assert confidence(distance, 0.6) == pytest.approx(expected, abs=1e-12)
    assert isinstance(confidence(distance, 0.6), float)


def test_confidence_is_zero_without_a_distance_or_a_tolerance():
    assert confidence(float("nan"), 0.6) == 0.0
    assert confidence(0.0, 0.0) == 0.0  # tolerance 0: nothing is ever a match
    assert confidence(0.1, -1.0) == 0.0
    assert confidence(0.25, 0.5) == 0.75 and confidence(0.5, 1.0) == 0.75  # scales with the tolerance


# --- distances ------------------------------------------------------------------------------------

def test_distance_matrix_is_the_euclidean_distance_of_every_pair():
    rng = np.random.default_rng(7)
    faces, known = rng.normal(size=(5, 128)), rng.normal(size=(3, 128))
    expected = np.linalg.norm(faces[:, None, :] - known[None, :, :], axis=2)
    distances = distance_matrix(faces, known)
    assert distances.shape == (5, 3)
    np.testing.assert_allclose(distances, expected, rtol=1e-9)


def test_a_face_is_at_distance_zero_from_itself_never_nan():
    rng = np.random.default_rng(0)
    faces = rng.normal(size=(50, 128)) * 0.1  # rounding makes some squared distances slightly negative
    distances = distance_matrix(faces, faces)
    assert not np.isnan(distances).any()
    np.testing.assert_allclose(np.diag(distances), 0.0, atol=1e-6)
    assert distance_matrix(gallery((0.0,)), gallery((0.5,)))[0, 0] == 0.5


# --- nearest (the default) ------------------------------------------------------------------------

def test_each_face_gets_the_name_of_its_nearest_photo():
    known = gallery((1.0,), (0.0, 1.0), (0.0, 0.0, 1.0))
    faces = np.array([at(0.0, 0.9), at(0.0, 0.0, 1.1), at(0.95)])
    matches = match_faces(faces, known, ["ann", "bob", "cid"], MatchSettings(0.6))
    assert [m.name for m in matches] == ["bob", "cid", "ann"]
    assert [m.distance for m in matches] == pytest.approx([0.1, 0.1, 0.05])
    assert [m.confidence for m in matches] == pytest.approx([1 - 0.1 / 1.2, 1 - 0.1 / 1.2, 1 - 0.05 / 1.2])
    assert all(isinstance(m.distance, float) for m in matches)


def test_a_distance_exactly_at_the_tolerance_is_a_match_and_just_beyond_is_not():
    known = gallery((0.5,))
    [exact] = match_faces(np.array([at(0.0)]), known, ["ann"], MatchSettings(0.5))
    assert exact == Match("ann", 0.5, 0.5)
    [exact] = match_faces(np.array([at(0.5)]), gallery((0.0,)), ["ann"], MatchSettings(0.5))  # the face at 0.5 e1, the photo at 0
    assert exact == Match("ann", 0.5, 0.5)
    [beyond] = match_faces(np.array([at(0.0)]), known, ["ann"], MatchSettings(math.nextafter(0.5, 0)))
    assert beyond.name == UNKNOWN and beyond.distance == 0.5


def test_a_face_too_far_from_everyone_is_unknown_with_its_nearest_distance():
    [match] = match_faces(np.array([at(3.0)]), gallery((1.0,), (0.0, 1.0)), ["ann", "bob"], MatchSettings(0.6))
    assert match.name == UNKNOWN and match.distance == pytest.approx(2.0) and match.confidence == 0.0


def test_no_faces_no_matches_and_an_empty_gallery_knows_nobody():
    assert match_faces(np.empty((0, 128)), gallery((1.0,)), ["ann"], MatchSettings(0.6)) == []
    assert match_faces(np.empty((0, 128)), np.empty((0, 128)), [], MatchSettings(0.6, "knn")) == []
    matches = match_faces(np.array([at(1.0), at(2.0)]), np.empty((0, 128)), [], MatchSettings(0.6))
    assert len(matches) == 2
    assert all(m.name == UNKNOWN and math.isnan(m.distance) and m.confidence == 0.0 for m in matches)


# --- k nearest vote -------------------------------------------------------------------------------

def test_knn_lets_several_near_photos_outvote_one_nearer_photo():
    known = gallery((0.1,), (0.0, 0.25), (0.0, 0.0, 0.25), (0.0, 0.0, 0.0, 0.25))
    names = ["bob", "ann", "ann", "ann"]
    face = np.array([at(0.0)])
    assert match_faces(face, known, names, MatchSettings(0.6))[0].name == "bob"
    [vote] = match_faces(face, known, names, MatchSettings(0.6, "knn", 4))
    assert vote.name == "ann" and vote.distance == pytest.approx(0.25)  # 3/0.25 = 12 beats 1/0.1 = 10
    assert vote.confidence == pytest.approx(1 - 0.25 / 1.2)
    [two] = match_faces(face, known, names, MatchSettings(0.6, "knn", 2))  # bob 1/0.1 against ann 1/0.25
    assert two.name == "bob" and two.distance == pytest.approx(0.1)


def test_knn_weighs_each_vote_by_the_inverse_distance():
    known = gallery((0.1,), (0.0, 0.25), (0.0, 0.0, 0.25))
    face = np.array([at(0.0)])
    [vote] = match_faces(face, known, ["bob", "ann", "ann"], MatchSettings(0.6, "knn", 3))
    assert vote.name == "bob"  # 1/0.1 = 10 beats 2/0.25 = 8
    known = gallery((0.1,), (0.0, 0.15), (0.0, 0.0, 0.15))
    [vote] = match_faces(face, known, ["bob", "ann", "ann"], MatchSettings(0.6, "knn", 3))
    assert vote.name == "ann"  # 2/0.15 = 13.3 beats 10


def test_knn_default_k_is_the_rounded_square_root_of_the_gallery_size():
    # 9 photos: k = 3. The 3 nearest are 2 bob (far), 1 ann (near); ann's other photos are out of reach.
    points = [(0.2,), (0.0, 0.35), (0.0, 0.0, 0.35)] + [(0.0,) * i + (0.5,) for i in range(3, 9)]
    names = ["ann", "bob", "bob"] + ["ann"] * 6
    face = np.array([at(0.0)])
    [vote] = match_faces(face, gallery(*points), names, MatchSettings(0.6, "knn"))
    assert vote.name == "bob"  # 2/0.35 = 5.7 against ann's 1/0.2 = 5 (k=3); with k=4 ann would win
    [small] = match_faces(face, gallery((0.2,), (0.0, 0.3)), ["ann", "bob"], MatchSettings(0.6, "knn"))
    assert small.name == "ann"  # 2 photos: k = 1


def test_knn_only_counts_photos_within_the_tolerance_including_exactly_at_it():
    known = gallery((0.5,), (0.0, 0.7), (0.0, 0.0, 0.7))
    face = np.array([at(0.0)])
    [vote] = match_faces(face, known, ["ann", "bob", "bob"], MatchSettings(0.5, "knn", 3))
    assert vote == Match("ann", 0.5, 0.5, None, "vote")  # bob's photos are beyond the tolerance: no votes
    [none] = match_faces(face, known, ["ann", "bob", "bob"], MatchSettings(math.nextafter(0.5, 0), "knn", 3))
    assert none.name == UNKNOWN and none.distance == 0.5  # the nearest photo's distance
    assert none.decision == "beyond tolerance"


def test_knn_says_unknown_when_no_neighbour_is_within_tolerance():
    known = gallery((1.0,), (0.0, 1.0), (0.0, 0.0, 1.0), (0.0, 0.0, 0.0, 1.2))
    [vote] = match_faces(np.array([at(0.0)]), known, ["a", "b", "c", "d"], MatchSettings(0.6, "knn"))
    assert vote.name == UNKNOWN and vote.distance == pytest.approx(1.0)
    assert vote.confidence == pytest.approx(1 - 1.0 / 1.2)  # as far as the nearest photo


def test_knn_survives_a_photo_identical_to_the_face():
    known = gallery((0.0,), (0.0, 0.1), (0.0, 0.0, 0.1))
    [vote] = match_faces(np.array([at(0.0)]), known, ["ann", "bob", "bob"], MatchSettings(0.6, "knn", 3))
    assert vote.name == "ann" and vote.distance == 0.0 and vote.confidence == 1.0  # 1/1e-6 outweighs 2/0.1


def test_knn_names_each_face_on_its_own():
    known = gallery((1.0,), (0.0, 1.0))
    faces = np.array([at(0.0, 0.9), at(0.9)])
    assert [m.name for m in match_faces(faces, known, ["ann", "bob"], MatchSettings(0.6, "knn", 1))] == ["bob", "ann"]


# --- the nearest other person, and the decision rule ----------------------------------------------

def test_the_margin_is_measured_to_the_nearest_other_person_not_to_the_same_persons_next_photo():
    known = gallery((0.62,), (0.0, 0.64), (0.0, 0.0, 0.75), (0.0, 0.0, 0.0, 0.9))
    names = ["ann", "ann", "bob", "cid"]
    [nearest] = nearest_people(np.array([at(0.0)]), known, names)
    assert nearest == Nearest("ann", pytest.approx(0.62), pytest.approx(0.75))
    [named] = match_faces(np.array([at(0.0)]), known, names, MatchSettings(0.6, decision="margin", ceiling=0.65,
                                                                          margin=0.1))
    assert named.name == "ann" and named.margin == pytest.approx(0.13) and named.decision == "margin"
    [alone] = nearest_people(np.array([at(0.0)]), known[:2], names[:2])
    assert alone.other is None and alone.margin is None


def test_an_index_finds_the_other_person_beyond_many_photos_of_the_nearest_one():
    rng = np.random.default_rng(5)
    centre = rng.normal(size=128) * 0.1
    ann = centre + rng.normal(size=(3 * FIRST_K, 128)) * 0.01  # more photos than the first search asks for
    bob, cid = centre + 0.7 / np.sqrt(128), centre - 0.9 / np.sqrt(128)
    vectors = np.vstack([ann, bob, cid]).astype(np.float32)
    names = ["ann"] * len(ann) + ["bob", "cid"]
    index = FaceIndex.build(np.arange(len(names)), names, vectors)
    probes = np.array([centre, bob, cid], np.float32)
    with_index = nearest_people(probes, index, None)
    with_arrays = nearest_people(probes, vectors, names)
    assert [n.name for n in with_index] == [n.name for n in with_arrays] == ["ann", "bob", "cid"]
    for found, expected in zip(with_index, with_arrays):
        assert found.distance == pytest.approx(expected.distance, abs=1e-4)
        assert found.other == pytest.approx(expected.other, abs=1e-4)
    assert with_index[0].other == pytest.approx(0.7, abs=0.05)


def test_the_nearest_decision_names_exactly_as_the_nearest_photo_within_the_tolerance():
    """--decision nearest is today's rule: the nearest photo's person within the tolerance, its distance."""
    rng = np.random.default_rng(11)
    for _ in range(20):
        known = rng.normal(size=(12, 128)) * 0.06
        names = [f"p{i}" for i in rng.integers(0, 5, 12)]
        faces = known[rng.integers(0, 12, 8)] + rng.normal(size=(8, 128)) * 0.05
        distances = np.linalg.norm(faces[:, None] - known[None], axis=2)
        tolerance = float(np.median(distances.min(axis=1)))
        matches = match_faces(faces, known, names, MatchSettings(tolerance, decision="nearest"))
        for row, match in zip(distances, matches):
            nearest = int(row.argmin())
            assert match.name == (names[nearest] if row[nearest] <= tolerance else UNKNOWN)
            assert match.distance == pytest.approx(row[nearest], abs=1e-12)
