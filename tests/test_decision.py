"""The decision rule (facewire.faces.decision): verdicts on hand-made distances, on real photos of the shared
data, and the projection of how often strangers get a name."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from bench.face_sets import make_gallery, portraits, reduced_set, shared_set
from facewire.client.client import Client
from facewire.faces import decision, images
from facewire.faces.decision import (
    AMBIGUOUS,
    BEYOND_CEILING,
    BEYOND_TOLERANCE,
    BY_MARGIN,
    EMPTY_GALLERY,
    UNKNOWN,
    WITHIN_TOLERANCE,
    ImpostorModel,
    Nearest,
    Verdict,
    decide,
    false_name_rate,
    recommended,
)
from facewire.faces.index import FaceIndex
from facewire.faces.matching import match_faces
from facewire.faces.recognize import find_faces
from facewire.faces.settings import DetectorSettings, MatchSettings
from facewire.process import ServerProcess
from facewire.store.live import folder_gallery

from .conftest import REPO_PROBES

MARGIN = MatchSettings(0.5, decision="margin", ceiling=0.625, margin=0.125)
"""Values that binary floating point holds exactly, so that "exactly at" means exactly."""
NEAREST = MatchSettings(0.5, decision="nearest")
DETECTION = DetectorSettings(detect_threads="1")


# --- verdicts ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("settings", [MARGIN, NEAREST])
def test_within_the_tolerance_the_nearest_person_is_named_whatever_the_rule(settings):
    assert decide(Nearest("ann", 0.5, 0.51), settings) == Verdict("ann", 0.5, pytest.approx(0.01), WITHIN_TOLERANCE)
    assert decide(Nearest("ann", 0.25), settings) == Verdict("ann", 0.25, None, WITHIN_TOLERANCE)


def test_the_margin_names_a_face_beyond_the_tolerance_when_the_next_person_is_far_enough():
    assert decide(Nearest("ann", 0.5625, 0.6875), MARGIN) == Verdict("ann", 0.5625, 0.125, BY_MARGIN)  # exactly at
    assert decide(Nearest("ann", 0.625, 0.75), MARGIN) == Verdict("ann", 0.625, 0.125, BY_MARGIN)  # the ceiling
    assert decide(Nearest("ann", 0.5625, 0.6875), NEAREST) == Verdict(UNKNOWN, 0.5625, 0.125, BEYOND_TOLERANCE)


def test_the_margin_refuses_a_near_second_person_a_face_beyond_the_ceiling_and_a_gallery_of_one():
    close = decide(Nearest("ann", 0.5625, math.nextafter(0.6875, 0)), MARGIN)
    assert close.name == UNKNOWN and close.decision == AMBIGUOUS and close.margin < 0.125
    beyond = decide(Nearest("ann", math.nextafter(0.625, 1), 2.0), MARGIN)
    assert beyond.name == UNKNOWN and beyond.decision == BEYOND_CEILING
    assert decide(Nearest("ann", 0.5625), MARGIN) == Verdict(UNKNOWN, 0.5625, None, BEYOND_TOLERANCE)


def test_an_empty_gallery_names_nobody():
    verdict = decide(None, MARGIN)
    assert verdict.name == UNKNOWN and math.isnan(verdict.distance) and verdict.decision == EMPTY_GALLERY


def test_a_requests_tolerance_moves_the_ceiling_with_it():
    stricter = MatchSettings().with_tolerance(0.5)
    assert (stricter.tolerance, stricter.ceiling, stricter.margin) == (0.5, 0.55, MatchSettings().margin)
    assert MatchSettings().with_tolerance(0.6) == MatchSettings()


# --- on real photos ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gallery(shared_faces, tmp_path_factory):
    """The shared gallery: five people."""
    known, _ = folder_gallery(shared_faces / "known", DETECTION,
                              f"sqlite:///{tmp_path_factory.mktemp('decision') / 'gallery.db'}")
    return known


@pytest.fixture(scope="module")
def rose_at_15_px(shared_faces, tmp_path_factory) -> np.ndarray:
    """kit_with_rose.jpg shrunk so that its faces are 15 px wide on average (bench/face_sets.py's reduced set)."""
    folder = make_gallery(tmp_path_factory.mktemp("decision-sets") / "gallery", shared_faces)
    [photo] = [case for case in shared_set(shared_faces) if case.name == "kit_with_rose.jpg"]
    [case] = reduced_set([photo], portraits([photo], folder), sizes=(15,))
    return case.image


def clip_frame(shared_faces, number: int) -> np.ndarray:
    capture = cv2.VideoCapture(str(shared_faces / "video" / "short_hamilton_clip.mp4"))
    capture.set(cv2.CAP_PROP_POS_FRAMES, number)
    ok, frame = capture.read()
    assert ok
    return frame


def obama_in_the_audience(shared_faces) -> np.ndarray:
    """Frame 215 of the clip: Barack Obama laughing in the audience, his head turned."""
    faces = find_faces(clip_frame(shared_faces, 215), DETECTION)
    [obama] = [f for f in faces if 280 <= (f.box[1] + f.box[3]) / 2 < 360 and (f.box[0] + f.box[2]) / 2 < 125]
    return np.array([obama.encoding])


def test_the_margin_names_rose_leslie_at_15_px_where_the_fixed_tolerance_does_not(gallery, rose_at_15_px):
    faces = find_faces(rose_at_15_px, DETECTION)
    encodings = np.array([f.encoding for f in faces])
    fixed = match_faces(encodings, gallery.encodings, gallery.names, MatchSettings(decision="nearest"))
    default = match_faces(encodings, gallery.encodings, gallery.names, MatchSettings())
    assert sorted(m.name for m in fixed) == [UNKNOWN, "kit_harington"]
    assert sorted(m.name for m in default) == ["kit_harington", "rose_leslie"]
    [(before, rose)] = [(f, d) for f, d in zip(fixed, default) if d.name == "rose_leslie"]
    assert rose.decision == BY_MARGIN and 0.6 < rose.distance <= 0.65 and rose.margin >= 0.16
    assert (before.name, before.decision, before.distance, before.margin) == (UNKNOWN, BEYOND_TOLERANCE,
                                                                            rose.distance, rose.margin)


def test_a_margin_of_a_tenth_would_name_obama_in_the_audience_and_eileen_collins_too(gallery, shared_faces,
                                                                                    tmp_path_factory):
    """Obama, 0.62 from his photos, is 0.1 nearer than Biden; Eileen Collins, a stranger, is 0.62 from Grace
    Hopper (dlib's HOG) and 0.11 nearer than anyone else: a margin of 0.1 names both, the default neither."""
    tenth = MatchSettings(margin=0.1)
    [obama] = match_faces(obama_in_the_audience(shared_faces), gallery.encodings, gallery.names, tenth)
    assert obama.name == "obama" and 0.6 < obama.distance <= 0.63 and 0.1 <= obama.margin < 0.16
    hog = DetectorSettings("hog", detect_threads="1")
    folder = make_gallery(tmp_path_factory.mktemp("decision-hopper") / "gallery", shared_faces)
    with_hopper, _ = folder_gallery(folder, hog, f"sqlite:///{folder.parent / 'gallery.db'}")
    faces = find_faces(images.read_image(REPO_PROBES / "group_small_faces.jpg"), hog)
    hopper, collins = sorted(faces, key=lambda face: face.box[3])
    [named] = match_faces(np.array([collins.encoding]), with_hopper.encodings, with_hopper.names, tenth)
    assert named.name == "grace_hopper" and 0.6 < named.distance <= 0.63 and 0.1 <= named.margin < 0.16
    [refused] = match_faces(np.array([collins.encoding]), with_hopper.encodings, with_hopper.names, MatchSettings())
    assert (refused.name, refused.decision) == (UNKNOWN, AMBIGUOUS)


def test_no_stranger_gets_a_name_under_the_default_rule(gallery, shared_faces, shared_detect):
    """The shared strangers and every face of the detection set's group photos: nobody is enrolled. The nearest
    is within the ceiling, 0.15 nearer than anyone else: the margin is what refuses it."""
    photos = sorted((shared_faces / "strangers").glob("*.jpg")) + sorted(shared_detect.glob("*.jpg"))
    encodings = np.array([f.encoding for p in photos for f in find_faces(images.read_image(p), DETECTION)])
    assert len(encodings) >= 40
    verdicts = match_faces(encodings, gallery.encodings, gallery.names, MatchSettings())
    assert [m.name for m in verdicts] == [UNKNOWN] * len(encodings)
    nearest = min(verdicts, key=lambda m: m.distance)
    assert 0.6 < nearest.distance <= 0.65 and 0.1 < nearest.margin < 0.16 and nearest.decision == AMBIGUOUS


# --- how often strangers get a name ------------------------------------------------------------------------

def test_the_nearest_rules_projection_grows_with_the_gallery_as_one_minus_one_minus_p_to_the_n():
    settings = MatchSettings(decision="nearest")
    p = decision.IMPOSTOR_MODEL.p(settings.tolerance)
    rates = [false_name_rate(settings, n) for n in (1, 6, 1_000, 10_000, 100_000)]
    assert rates == pytest.approx([1 - (1 - p) ** n for n in (1, 6, 1_000, 10_000, 100_000)], rel=1e-9)
    assert rates == sorted(rates) and rates[0] == pytest.approx(p) and false_name_rate(settings, 0) == 0.0


def test_the_margin_adds_to_the_tolerances_false_names_what_its_band_lets_through():
    margin, nearest = MatchSettings(), MatchSettings(decision="nearest")
    wide_open = MatchSettings(margin=0.0)  # the band with no margin asked: the ceiling's rate
    for n in (2, 6, 50):
        assert false_name_rate(nearest, n) < false_name_rate(margin, n) < false_name_rate(wide_open, n)
        assert false_name_rate(wide_open, n) == pytest.approx(false_name_rate(MatchSettings(0.65, decision="nearest"), n),
                                                              rel=1e-3)
    assert false_name_rate(margin, 1) == false_name_rate(nearest, 1)  # one person: no margin to measure
    for n in (1_000, 100_000):  # many people: someone else is always near, the margin names nobody more
        assert false_name_rate(margin, n) == pytest.approx(false_name_rate(nearest, n), abs=1e-6)


@pytest.mark.parametrize("settings", [MatchSettings(), MatchSettings(decision="nearest")])
@pytest.mark.parametrize("people", [6, 1_000, 100_000])
@pytest.mark.parametrize("rate", [0.001, 0.01, 0.1])
def test_the_recommended_tolerance_is_the_largest_that_keeps_the_projection_under_the_target(settings, people, rate):
    chosen = recommended(settings, people, rate)
    assert false_name_rate(chosen, people) <= rate < false_name_rate(chosen.with_tolerance(chosen.tolerance + 2e-4),
                                                                      people)
    assert chosen.ceiling - chosen.tolerance == pytest.approx(settings.ceiling - settings.tolerance)


def test_the_impostor_model_fitted_to_a_normal_sample_finds_its_parameters():
    sample = np.random.default_rng(3).normal(0.8, 0.07, 20_000)
    model = ImpostorModel.fit(sample)
    assert model.mean == pytest.approx(0.8, abs=0.005) and model.sd == pytest.approx(0.07, abs=0.005)
    assert model.p(0.8) == pytest.approx(0.5, abs=0.03)
    with pytest.raises(ValueError):
        ImpostorModel.fit([0.8, 0.9])


def test_the_server_says_how_often_strangers_would_get_a_name_per_gallery_size():
    lines = decision.projection_lines(MatchSettings(), 6)
    assert "margin" in lines[0] and len(lines) == 1 + 1 + len(decision.GALLERY_SIZES)
    assert "with 6 people (this gallery)" in lines[1] and "with 100000 people" in lines[-1]


# --- the server -------------------------------------------------------------------------------------------

def todays_names(gallery, encodings: np.ndarray) -> list[tuple[str, float]]:
    """What the server answered before the decision rule: the nearest photo of its index, named within 0.6."""
    index = FaceIndex.build(np.arange(len(gallery.names)), gallery.names, gallery.encodings)
    distances, ids = index.search(encodings, 1)
    return [(names[0] if row[0] <= 0.6 else UNKNOWN, round(float(row[0]), 4))
            for row, names in zip(distances, index.names_of(ids))]


def test_decision_nearest_on_the_server_gives_todays_names_and_distances(gallery, shared_faces, rose_at_15_px,
                                                                       tmp_path):
    pictures = [images.read_image(path) for path in sorted((shared_faces / "test").glob("*.jpg"))]
    pictures += [rose_at_15_px, clip_frame(shared_faces, 215)]  # named by the margin; refused by it
    arguments = ("--workers", "1", "--detect-threads", "1", "--db", f"sqlite:///{tmp_path / 'gallery.db'}")
    with ServerProcess(shared_faces / "known", tmp_path / "nearest.log", *arguments, "--decision", "nearest") as server, \
            Client(server.address, timeout=120) as client:
        replies = [client.recognize(picture, annotate=False).faces for picture in pictures]
        log = server.log()
    with ServerProcess(shared_faces / "known", tmp_path / "default.log", *arguments) as server, \
            Client(server.address, timeout=120) as client:
        defaults = [client.recognize(picture, annotate=False).faces for picture in pictures]
    for picture, faces, default in zip(pictures, replies, defaults):
        found = find_faces(picture, DETECTION)
        assert [f.box for f in faces] == [f.box for f in found]
        assert [(f.name, f.distance) for f in faces] == todays_names(gallery, np.array([f.encoding for f in found]))
        assert [(f.distance, f.margin) for f in default] == [(f.distance, f.margin) for f in faces]
    changed = [(f.name, g.name, g.decision) for faces, default in zip(replies, defaults)
               for f, g in zip(faces, default) if f.name != g.name]
    assert changed == [(UNKNOWN, "rose_leslie", BY_MARGIN)]  # at 15 px: named by the margin by default
    assert sorted(f.decision for f in defaults[-2]) == [BY_MARGIN, WITHIN_TOLERANCE]
    assert AMBIGUOUS in [f.decision for f in defaults[-1]]  # Obama in the audience: 0.1 nearer is not enough
    assert "false names projected for nearest within 0.6" in log and "with 5 people (this gallery)" in log
