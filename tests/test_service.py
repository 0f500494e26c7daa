"""The service in process (`Service.handle(frames) -> frames`): every op, recognition, and error replies.

The gallery is a copy of the repo's known_faces/ (Grace Hopper); the probe is the repo's small group
picture (Grace Hopper and Eileen Collins, faces of about 36 px).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time

import cv2
import numpy as np
import pytest

from facewire import __version__
from facewire.faces import draw, images, quality
from facewire.faces.boxes import iou
from facewire.faces.detection import detect_faces
from facewire.faces.encoding import encode_faces
from facewire.faces.index import FaceIndex
from facewire.faces.matching import UNKNOWN
from facewire.faces.recognize import Face, find_faces
from facewire.faces.settings import DetectorSettings, MatchSettings
from facewire.serve import service as service_module
from facewire.serve.service import Service, tracked_matches, verified
from facewire.serve.track import Tracker, Vouch
from facewire.store.live import GalleryStore
from facewire.wire import protocol
from facewire.wire.keys import Sender
from facewire.wire.limits import Limits

from .conftest import REPO_KNOWN, REPO_PROBES

SETTINGS = DetectorSettings()


def boxes(image: np.ndarray) -> list[tuple[int, int, int, int]]:
    """The boxes of the faces the default detector finds in `image`."""
    return [detection.box for detection in detect_faces(image, SETTINGS)]


@pytest.fixture(scope="module")
def group() -> np.ndarray:
    return images.read_image(REPO_PROBES / "group_small_faces.jpg")


@pytest.fixture(scope="module")
def database(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('service-db') / 'gallery.db'}"


@pytest.fixture
def known(tmp_path):
    folder = tmp_path / "known"
    shutil.copytree(REPO_KNOWN, folder, ignore=shutil.ignore_patterns(".*", "*.md"))
    return folder


@pytest.fixture
def service(known, tmp_path) -> Service:
    return Service(GalleryStore.prepared(f"sqlite:///{tmp_path / 'gallery.db'}", known, SETTINGS))


@pytest.fixture(scope="module")
def shared_service(tmp_path_factory, database) -> Service:
    """One service for the tests that only read the gallery."""
    folder = tmp_path_factory.mktemp("shared-known") / "known"
    shutil.copytree(REPO_KNOWN, folder, ignore=shutil.ignore_patterns(".*", "*.md"))
    return Service(GalleryStore.prepared(database, folder, SETTINGS))


def ask(service: Service, op: str, image: np.ndarray | None = None, encoding: str = "raw", **options):
    return protocol.unpack_reply(service.handle(protocol.pack_request(op, image, encoding, **options)))


def refused(frames: list, service: Service) -> dict:
    body, image = protocol.unpack_reply(service.handle(frames))
    assert body["ok"] is False and image is None, body
    return body


# --- gallery ops ----------------------------------------------------------------------------------

def test_ping_reports_the_version_and_the_gallery_size(shared_service):
    body, image = ask(shared_service, "ping")
    assert body == {"ok": True, "op": "ping", "version": __version__, "people": 1, "photos": 1,
                    "detector": "mtcnn"} and image is None
    body, _ = ask(shared_service, "ping", id="p-1")
    assert body["id"] == "p-1"


def test_list_names_each_person_with_a_photo_count(shared_service):
    body, _ = ask(shared_service, "list", id=3)
    assert body == {"ok": True, "op": "list", "people": {"grace_hopper": 1}, "id": 3}


def test_enroll_list_remove_and_reload(service, known, group):
    collins = group[:, group.shape[1] // 2:]
    body, _ = ask(service, "enroll", collins, name="Eileen Collins", id=1)
    assert body == {"ok": True, "op": "enroll", "name": "Eileen Collins", "photos": 1, "id": 1}
    assert len(list((known / "Eileen Collins").glob("*.jpg"))) == 1
    assert ask(service, "list")[0]["people"] == {"Eileen Collins": 1, "grace_hopper": 1}
    assert ask(service, "ping")[0]["photos"] == 2

    body, _ = ask(service, "remove", name="grace_hopper")
    assert body == {"ok": True, "op": "remove", "name": "grace_hopper", "removed": 1}
    assert not (known / "grace_hopper.jpg").exists()

    shutil.copy(REPO_KNOWN / "grace_hopper.jpg", known / "Eileen Collins" / "hopper.jpg")  # by hand, on disk
    body, _ = ask(service, "reload", id="r")
    assert body == {"ok": True, "op": "reload", "version": __version__, "people": 1, "photos": 2, "detector": "mtcnn",
                    "id": "r"}


def test_a_refused_enrolment_or_removal_is_an_error_reply_with_its_code(service, group, caplog):
    with caplog.at_level(logging.WARNING, logger="facewire.serve.service"):
        body = refused(protocol.pack_request("remove", name="nobody"), service)
    assert [r.getMessage() for r in caplog.records] == ["refused remove: no person called nobody"]
    body = refused(protocol.pack_request("enroll", group, name="two people", id=9), service)
    assert body["error"]["code"] == "bad_photo" and body["id"] == 9
    assert "exactly one face; it shows 2" in body["error"]["message"]
    body = refused(protocol.pack_request("remove", name="nobody"), service)
    assert body["error"] == {"code": "not_found", "message": "no person called nobody"} and "id" not in body
    body = refused(protocol.pack_request("remove", name="../etc", id="x"), service)
    assert body["error"]["code"] == "bad_name" and body["id"] == "x"


def test_a_malformed_request_is_refused_and_its_id_echoed(shared_service, caplog):
    with caplog.at_level(logging.WARNING, logger="facewire.serve.service"):
        body = refused([b'{"op": "explode", "id": 5}'], shared_service)
    message = "unknown op 'explode'; expected one of recognize, enroll, ping, list, reload, remove, photo, verify"
    assert body == {"ok": False, "id": 5, "error": {"code": "unknown_op", "message": message}}
    assert [r.getMessage() for r in caplog.records] == [f"refused request: unknown_op: {message}"]
    body = refused([b"not json"], shared_service)
    assert body == {"ok": False, "error": {"code": "bad_header", "message": "first frame is not valid UTF-8 JSON"}}


def test_the_services_pixel_limit_is_the_one_requests_are_checked_against(known):
    small = Service(GalleryStore.prepared(f"sqlite:///{known.parent / 'small.db'}", known, SETTINGS),
                    limits=Limits(max_pixels=99))
    body = refused(protocol.pack_request("recognize", np.zeros((10, 10, 3), np.uint8), id=1), small)
    assert body["error"] == {"code": "too_large", "message": "image of 10x10 pixels exceeds the limit of 99"}
    assert ask(small, "recognize", np.zeros((9, 11, 3), np.uint8))[0]["faces"] == []


class BrokenStore:
    def current(self):
        raise RuntimeError("disk on fire")

    counts = current


def test_an_internal_failure_becomes_an_internal_error_reply(caplog):
    service = Service(BrokenStore())
    with caplog.at_level(logging.ERROR, logger="facewire.serve.service"):
        body = refused(protocol.pack_request("ping", id="q"), service)
    assert body == {"ok": False, "id": "q",
                    "error": {"code": "internal", "message": "the server failed on this request; see its log"}}
    [record] = caplog.records
    assert record.getMessage() == "request failed" and "RuntimeError: disk on fire" in caplog.text  # with its traceback
    body = refused(protocol.pack_request("recognize", np.zeros((8, 8, 3), np.uint8)), service)
    assert body["error"]["code"] == "internal" and "id" not in body


# --- recognition ----------------------------------------------------------------------------------

def by_x(faces: list[dict]) -> list[dict]:
    return sorted(faces, key=lambda face: face["box"][3])


def test_recognize_names_the_known_face_and_leaves_the_other_unknown(shared_service, group, caplog):
    with caplog.at_level(logging.INFO, logger="facewire.serve.service"):
        body, annotated = ask(shared_service, "recognize", group, id=42)
    assert body["ok"] is True and body["op"] == "recognize" and body["id"] == 42
    hopper, collins = by_x(body["faces"])  # Grace Hopper is on the left
    assert hopper["name"] == "grace_hopper" and collins["name"] == UNKNOWN
    assert 0 < hopper["distance"] <= 0.6 < collins["distance"]
    assert hopper["distance"] == round(hopper["distance"], 4) and collins["distance"] == round(collins["distance"], 4)
    # the server rounds the confidence of the exact distance: from the rounded distance, within both roundings
    for face in (hopper, collins):
        assert face["confidence"] == round(face["confidence"], 3)
        exact = max(0.0, 1 - face["distance"] / 1.2)
        assert face["confidence"] == pytest.approx(exact, abs=0.0005 + 0.00005 / 1.2)
    detections = sorted(detect_faces(group, SETTINGS), key=lambda d: d.box[3])
    assert [tuple(f["box"]) for f in by_x(body["faces"])] == [d.box for d in detections]
    for face, detection in zip(by_x(body["faces"]), detections):  # MTCNN's probability and five landmarks
        assert face["score"] == round(detection.score, 4) and 0 < face["score"] <= 1
        assert face["landmarks"] == [[round(x, 1), round(y, 1)] for x, y in detection.landmarks]
        top, right, bottom, left = face["box"]
        assert len(face["landmarks"]) == 5
        assert all(left <= x <= right and top <= y <= bottom for x, y in face["landmarks"])
    assert all(f["tracked"] is False and isinstance(f["track"], str) and f["track"] for f in body["faces"])
    # one person in the gallery: no margin; Collins is beyond the tolerance and there is nobody to compare with
    assert (hopper["decision"], hopper["margin"]) == ("within tolerance", None)
    assert (collins["decision"], collins["margin"]) == ("beyond tolerance", None)
    for face, detection in zip(by_x(body["faces"]), detections):
        assert face["quality"] == quality.face_quality(group, detection).to_json()
        assert face["quality"]["width"] == face["box"][1] - face["box"][3] and face["quality"]["sharpness"] > 0
    assert set(body["timings_ms"]) == {"detect", "encode", "match", "draw", "total"}
    assert all(v >= 0 for v in body["timings_ms"].values())
    assert body["timings_ms"]["total"] >= body["timings_ms"]["detect"]
    h, w = group.shape[:2]
    names = ", ".join(f["name"] for f in body["faces"])
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("recognize")]
    assert re.fullmatch(rf"recognize {w}x{h}: {names} in \d+ ms", line)  # what operators (and test_track) read
    assert annotated.shape == group.shape and annotated.dtype == np.uint8


def test_the_annotated_image_shows_each_name_and_distance_under_its_box(shared_service, group):
    body, annotated = ask(shared_service, "recognize", group)
    labels = [draw.Label(tuple(f["box"]), f"{f['name']} {f['distance']:.2f}", True) if f["name"] != UNKNOWN
              else draw.Label(tuple(f["box"]), UNKNOWN, False) for f in body["faces"]]  # in the reply's order
    hopper = by_x(body["faces"])[0]
    assert {label.text for label in labels} == {f"grace_hopper {hopper['distance']:.2f}", UNKNOWN}
    expected = draw.annotate(group.copy(), labels)
    np.testing.assert_array_equal(annotated, expected)
    assert not np.array_equal(annotated, group)


def test_recognize_without_annotation_sends_no_image(shared_service, group):
    body, image = ask(shared_service, "recognize", group, annotate=False)
    assert image is None and "image" not in body
    assert set(body["timings_ms"]) == {"detect", "encode", "match", "total"}
    assert sorted(f["name"] for f in body["faces"]) == [UNKNOWN, "grace_hopper"]


def test_the_request_tolerance_overrides_the_servers(shared_service, group):
    body, _ = ask(shared_service, "recognize", group, annotate=False, tolerance=0.05)
    assert [f["name"] for f in body["faces"]] == [UNKNOWN, UNKNOWN]
    hopper = by_x(body["faces"])[0]
    assert hopper["confidence"] == round(max(0.0, 1 - hopper["distance"] / 0.1), 3)


def test_the_servers_tolerance_is_the_default(known, group):
    strict = Service(GalleryStore.prepared(f"sqlite:///{known.parent / 'strict.db'}", known, SETTINGS), MatchSettings(0.05))
    body, _ = ask(strict, "recognize", group, annotate=False)
    assert [f["name"] for f in body["faces"]] == [UNKNOWN, UNKNOWN]


def test_a_compressed_request_gets_a_compressed_annotated_image_back(shared_service, group):
    body, image = ask(shared_service, "recognize", group, encoding="png")
    assert body["image"]["encoding"] == "png" and image.shape == group.shape
    assert sorted(f["name"] for f in body["faces"]) == [UNKNOWN, "grace_hopper"]


def test_a_grey_picture_is_recognised_and_annotated_in_colour(shared_service, group):
    grey = cv2.cvtColor(group, cv2.COLOR_BGR2GRAY)
    body, annotated = ask(shared_service, "recognize", grey)
    assert "grace_hopper" in [f["name"] for f in body["faces"]]
    assert annotated.shape == group.shape  # drawn on a colour copy


def test_a_classic_send_array_request_gets_the_annotated_array_back(shared_service, group):
    frames = shared_service.handle(protocol.pack_classic(group))
    header, pixels = frames
    assert json.loads(header) == {"dtype": "uint8", "shape": list(group.shape)}
    _, annotated = ask(shared_service, "recognize", group)
    assert bytes(pixels) == annotated.tobytes()


def test_an_imagezmq_frame_gets_one_json_frame_with_the_camera_and_is_logged_by_camera(shared_service, group,
                                                                                        caplog):
    header = json.dumps({"msg": "front door", "dtype": "uint8", "shape": list(group.shape)}).encode()
    with caplog.at_level(logging.INFO, logger="facewire.serve.service"):
        [reply] = shared_service.handle([header, group.tobytes()])
    body = json.loads(reply)
    expected, _ = ask(shared_service, "recognize", group, annotate=False)
    assert body["ok"] is True and body["msg"] == "front door" and set(body) == {"ok", "msg", "faces", "timings_ms"}
    assert [(f["name"], f["box"]) for f in body["faces"]] == [(f["name"], f["box"]) for f in expected["faces"]]
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("camera")]
    names = ", ".join(f["name"] for f in body["faces"])
    assert re.fullmatch(rf"camera 'front door', {group.shape[1]}x{group.shape[0]}: {names} in \d+ ms", line), line


def test_a_picture_without_faces(shared_service, caplog):
    coffee = images.read_image(REPO_PROBES / "no_face.jpg")
    with caplog.at_level(logging.INFO, logger="facewire.serve.service"):
        body, image = ask(shared_service, "recognize", coffee)
    assert body["faces"] == [] and image is not None
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("recognize")]
    assert re.fullmatch(rf"recognize {coffee.shape[1]}x{coffee.shape[0]}: no face in \d+ ms", line)


class FixedStore:
    """A gallery of given encodings (no photos): to set up distances exactly."""

    settings = SETTINGS

    def __init__(self, names, encodings):
        self.index = FaceIndex.build(np.arange(len(names)), names, np.asarray(encodings, np.float32).reshape(-1, 128))

    def current(self):
        return self.index


@pytest.fixture(scope="module")
def hopper_encoding(group) -> np.ndarray:
    box = min(boxes(group), key=lambda b: b[3])
    return encode_faces(images.to_rgb(group), [box], SETTINGS)[0]


def offset(encoding: np.ndarray, distance: float, axis: int) -> np.ndarray:
    moved = encoding.copy()
    moved[axis] += distance
    return moved


def test_the_match_method_and_k_are_the_services(hopper_encoding, group):
    """One photo of "near" at 0.1, two of "pair" at 0.15: nearest says near, a 3-vote says pair."""
    store = FixedStore(["near", "pair", "pair"], [offset(hopper_encoding, 0.1, 0), offset(hopper_encoding, 0.15, 1),
                                                  offset(hopper_encoding, 0.15, 2)])
    nearest = by_x(ask(Service(store), "recognize", group, annotate=False)[0]["faces"])[0]
    assert nearest["name"] == "near" and nearest["distance"] == pytest.approx(0.1, abs=1e-3)
    vote = by_x(ask(Service(store, MatchSettings(method="knn", k=3)), "recognize", group, annotate=False)[0]["faces"])[0]
    assert vote["name"] == "pair" and vote["distance"] == pytest.approx(0.15, abs=1e-3)
    one = by_x(ask(Service(store, MatchSettings(method="knn", k=1)), "recognize", group, annotate=False)[0]["faces"])[0]
    assert one["name"] == "near"


def test_the_margin_rule_names_a_face_beyond_the_tolerance_when_the_next_person_is_far(hopper_encoding, group):
    """"near" at 0.615 (beyond the tolerance), "far" at 0.8: the default names near by its margin of 0.185;
    --decision nearest does not; nor does the default when "far" comes within 0.16 of near, nor a stricter
    request, whose tolerance moves the ceiling down with it."""
    store = FixedStore(["near", "far"], [offset(hopper_encoding, 0.615, 0), offset(hopper_encoding, 0.8, 1)])
    hopper = by_x(ask(Service(store), "recognize", group, annotate=False)[0]["faces"])[0]
    assert (hopper["name"], hopper["decision"]) == ("near", "margin")
    assert hopper["distance"] == pytest.approx(0.615, abs=1e-3) and hopper["margin"] == pytest.approx(0.185, abs=2e-3)
    fixed = by_x(ask(Service(store, MatchSettings(decision="nearest")), "recognize", group,
                     annotate=False)[0]["faces"])[0]
    assert (fixed["name"], fixed["decision"], fixed["margin"]) == (UNKNOWN, "beyond tolerance", hopper["margin"])
    stricter = by_x(ask(Service(store), "recognize", group, annotate=False, tolerance=0.55)[0]["faces"])[0]
    assert (stricter["name"], stricter["decision"]) == (UNKNOWN, "beyond ceiling")  # the ceiling is now 0.6
    close = FixedStore(["near", "far"], [offset(hopper_encoding, 0.615, 0), offset(hopper_encoding, 0.7, 1)])
    ambiguous = by_x(ask(Service(close), "recognize", group, annotate=False)[0]["faces"])[0]
    assert (ambiguous["name"], ambiguous["decision"]) == (UNKNOWN, "ambiguous")


def test_an_empty_gallery_knows_nobody():
    service = Service(FixedStore([], np.empty((0, 128))))
    body, _ = ask(service, "recognize", images.read_image(REPO_PROBES / "group_small_faces.jpg"), annotate=False)
    assert [(f["name"], f["distance"], f["confidence"]) for f in body["faces"]] == [(UNKNOWN, None, 0.0)] * 2
    assert [(f["margin"], f["decision"]) for f in body["faces"]] == [(None, "empty gallery")] * 2


def test_timings_are_milliseconds_with_two_decimals_and_add_up(shared_service, group):
    started = time.perf_counter()
    body, _ = ask(shared_service, "recognize", group)
    wall_ms = (time.perf_counter() - started) * 1000
    timings = body["timings_ms"]
    assert all(isinstance(v, float) and v == round(v, 2) for v in timings.values()), timings
    assert timings["detect"] > 0 and timings["encode"] > 1  # detecting and encoding two faces take time
    laps = timings["detect"] + timings["encode"] + timings["match"] + timings["draw"]
    assert laps - 0.05 <= timings["total"] <= wall_ms


# --- tracking: which token vouches for which face -----------------------------------------------

def vouch(name: str, box, tolerance: float = 0.6, seen: float = 1000.0) -> Vouch:
    return Vouch(name, 0.3, box, tolerance, seen)


def test_each_box_takes_the_token_that_overlaps_it_most():
    tracker = Tracker(clock=lambda: 1000.0)
    box = (0, 100, 100, 0)
    near, nearer = (0, 100, 100, 30), (0, 100, 100, 10)  # IoU 0.7 and 0.9 with the box
    tokens = [tracker.issue(vouch("near", near)), tracker.issue(vouch("nearer", nearer)),
              tracker.issue(vouch("far", (500, 600, 600, 500)))]
    [found] = tracked_matches([box], verified(tokens, 0.6, tracker))
    assert found.name == "nearer"
    [found] = tracked_matches([box], verified(tokens[::-1], 0.6, tracker))
    assert found.name == "nearer"


def test_an_overlap_of_exactly_half_is_enough_and_less_is_not():
    tracker = Tracker(clock=lambda: 1000.0)
    box = (0, 100, 100, 0)
    half = tracker.issue(vouch("half", (0, 100, 50, 0)))  # IoU exactly 0.5
    assert tracked_matches([box], verified([half], 0.6, tracker))[0].name == "half"
    less = tracker.issue(vouch("less", (0, 100, 49, 0)))
    assert tracked_matches([box], verified([less], 0.6, tracker)) == [None]
    assert tracked_matches([box], verified([], 0.6, tracker)) == [None] and tracked_matches([], verified([half], 0.6, tracker)) == []


def test_a_tracked_face_gets_a_token_for_where_it_is_now(group):
    now = [1_000_000.0]
    store = FixedStore(["x"], [np.full(128, 5.0)])
    service = Service(store, tracker=Tracker(clock=lambda: now[0]))
    [box, *_] = boxes(group)
    top, right, bottom, left = box
    shifted = (top + 2, right + 2, bottom + 2, left + 2)  # where the face was in the last frame
    token = service.tracker.issue(Vouch("grace_hopper", 0.3, shifted, 0.6, now[0] - 1))
    body, _ = ask(service, "recognize", group, annotate=False, track=[token])
    [face] = [f for f in body["faces"] if tuple(f["box"]) == box]
    assert face["tracked"] is True and face["name"] == "grace_hopper" and face["distance"] == 0.3
    assert face["decision"] == "tracked" and face["margin"] is None and face["quality"]["width"] == right - left
    assert service.tracker.verify(face["track"]) == Vouch("grace_hopper", 0.3, box, 0.6, now[0] - 1)


def test_a_tracked_scan_looks_only_around_the_faces_the_tokens_vouch_for(group):
    now = [1_000_000.0]
    service = Service(FixedStore(["x"], [np.full(128, 5.0)]), tracker=Tracker(clock=lambda: now[0]))
    hopper, collins = sorted(boxes(group), key=lambda box: box[3])
    token = service.tracker.issue(Vouch("grace_hopper", 0.3, hopper, 0.6, now[0] - 1))
    body, _ = ask(service, "recognize", group, annotate=False, track=[token], scan="tracked")
    [face] = body["faces"]  # the region is scanned on its own, at its own scale: a box may move a pixel
    assert face["name"] == "grace_hopper" and face["tracked"] is True and iou(tuple(face["box"]), hopper) >= 0.85
    body, _ = ask(service, "recognize", group, annotate=False, track=[token])  # the default: the whole picture
    assert sorted(tuple(f["box"]) for f in body["faces"]) == sorted([hopper, collins])
    forged = Tracker().issue(Vouch("grace_hopper", 0.3, hopper, 0.6, now[0] - 1))
    body, _ = ask(service, "recognize", group, annotate=False, track=[forged], scan="tracked")
    assert len(body["faces"]) == 2 and not any(f["tracked"] for f in body["faces"])  # no valid token: everywhere
    body, _ = ask(service, "recognize", group, annotate=False, track=[], scan="tracked")
    assert body["faces"] == []  # no token at all: the last frame had no face, look nowhere


def test_the_photo_op_replies_a_thumbnail_of_the_persons_photo_under_their_name(shared_service, known):
    body, image = ask(shared_service, "photo", name="grace_hopper", id=5)
    assert {**body, "image": None} == {"ok": True, "op": "photo", "id": 5, "name": "grace_hopper", "image": None}
    original = images.read_image(REPO_KNOWN / "grace_hopper.jpg")
    assert max(image.shape[:2]) == 160 and image.shape[1] == round(original.shape[1] * 160 / max(original.shape[:2]))
    resized = cv2.resize(original, image.shape[1::-1], interpolation=cv2.INTER_AREA)
    assert np.abs(image.astype(int) - resized).mean() < 1
    assert refused(protocol.pack_request("photo", name="nobody"), shared_service)["error"]["code"] == "not_found"
    assert refused(protocol.pack_request("photo", name="../x"), shared_service)["error"]["code"] == "bad_name"


# --- verify: one face against another, or against a person of the gallery --------------------------

@pytest.fixture(scope="module")
def people_service(shared_faces, tmp_path_factory) -> Service:
    """The shared gallery (obama, biden, ...), read where it lies into a database of the test's own."""
    database = f"sqlite:///{tmp_path_factory.mktemp('verify-db') / 'gallery.db'}"
    return Service(GalleryStore.prepared(database, shared_faces / "known", SETTINGS))


def face_of(path) -> Face:
    [face] = find_faces(images.read_image(path), SETTINGS)
    return face


def verify(service: Service, image: np.ndarray, image2: np.ndarray | None = None, encoding: str = "raw",
           **options) -> dict:
    """The body of a verify reply that succeeded (it has no image frame)."""
    body, image = protocol.unpack_reply(service.handle(protocol.pack_verify(image, image2, encoding, **options)))
    assert body["ok"] is True and image is None, body
    return body


def test_verify_says_two_photos_of_obama_are_the_same_person(people_service, shared_faces):
    obama, obama1 = shared_faces / "known" / "obama" / "obama.jpg", shared_faces / "test" / "obama1.jpg"
    body = verify(people_service, images.read_image(obama), images.read_image(obama1), id=8)
    first, second = face_of(obama), face_of(obama1)
    distance = float(np.linalg.norm(first.encoding - second.encoding))
    assert body == {"ok": True, "op": "verify", "id": 8, "same": True, "distance": round(distance, 4),
                    "threshold": 0.6, "decision": "same", "faces": [list(first.box), list(second.box)]}
    assert distance < 0.6


def test_verify_says_obama_and_biden_are_different_people_whatever_the_wire_encoding(people_service, shared_faces):
    obama = images.read_image(shared_faces / "known" / "obama" / "obama.jpg")
    biden = images.read_image(shared_faces / "known" / "biden" / "biden.jpg")
    for encoding in ("raw", "jpeg", "png"):
        body = verify(people_service, obama, biden, encoding)
        assert (body["same"], body["decision"]) == (False, "different") and body["distance"] > 0.6, (encoding, body)


@pytest.mark.parametrize("first, second, message", [
    ("known/obama/obama.jpg", "test/two_people.jpg", "image 2 must show exactly one face; it shows 2"),
    ("test/two_people.jpg", "known/obama/obama.jpg", "image 1 must show exactly one face; it shows 2"),
    ("no_face.jpg", "known/obama/obama.jpg", "image 1 must show exactly one face; it shows 0"),
    ("known/biden/biden.jpg", "no_face.jpg", "image 2 must show exactly one face; it shows 0"),
])
def test_verify_refuses_an_image_without_exactly_one_face_naming_it(people_service, shared_faces, first, second,
                                                                    message):
    def read(name: str) -> np.ndarray:
        return images.read_image(REPO_PROBES / name if name == "no_face.jpg" else shared_faces / name)

    body = refused(protocol.pack_verify(read(first), read(second), id="v"), people_service)
    assert body == {"ok": False, "id": "v", "error": {"code": "bad_photo", "message": message}}


def test_verify_against_a_name_measures_the_nearest_of_that_persons_photos(people_service, shared_faces):
    probe = shared_faces / "test" / "obama1.jpg"
    face = face_of(probe)
    for name, same in (("obama", True), ("biden", False)):
        photos = [face_of(path).encoding for path in sorted((shared_faces / "known" / name).iterdir())]
        distance = min(float(np.linalg.norm(face.encoding - photo)) for photo in photos)
        body = verify(people_service, images.read_image(probe), name=name)
        assert body == {"ok": True, "op": "verify", "name": name, "same": same, "distance": round(distance, 4),
                        "threshold": 0.6, "decision": "same" if same else "different", "faces": [list(face.box)]}
        assert len(photos) == 2


def test_verify_refuses_an_unknown_or_bad_name_before_looking_for_a_face(people_service, shared_faces, monkeypatch):
    monkeypatch.setattr(service_module, "find_faces", lambda *args: pytest.fail("detection ran"))
    image = images.read_image(shared_faces / "test" / "obama1.jpg")
    body = refused(protocol.pack_verify(image, name="nobody", id=2), people_service)
    assert body == {"ok": False, "id": 2, "error": {"code": "not_found", "message": "no person called nobody"}}
    assert refused(protocol.pack_verify(image, name="../obama"), people_service)["error"]["code"] == "bad_name"
    assert refused(protocol.pack_verify(image, name=" "), people_service)["error"]["code"] == "bad_name"


def test_verify_takes_the_requests_tolerance_or_the_servers(people_service, shared_faces):
    obama = images.read_image(shared_faces / "known" / "obama" / "obama.jpg")
    obama1 = images.read_image(shared_faces / "test" / "obama1.jpg")
    strict = verify(people_service, obama, obama1, tolerance=0.1)
    assert (strict["same"], strict["decision"], strict["threshold"]) == (False, "different", 0.1)
    loose = verify(people_service, obama1, name="biden", tolerance=1)
    assert (loose["same"], loose["decision"], loose["threshold"]) == (True, "same", 1)
    body = verify(Service(people_service.store, MatchSettings(0.2)), obama, obama1)
    assert (body["same"], body["threshold"]) == (False, 0.2)


def test_verify_is_no_edit_a_read_only_server_answers_a_viewer(people_service, shared_faces):
    probe = protocol.pack_verify(images.read_image(shared_faces / "test" / "obama1.jpg"), name="obama")
    body, _ = protocol.unpack_reply(Service(people_service.store, read_only=True).handle(probe, Sender("vera", False)))
    assert body["ok"] is True and body["same"] is True


def test_verify_follows_the_live_gallery(service):
    hopper = images.read_image(REPO_PROBES / "grace_hopper.jpg")
    assert verify(service, hopper, name="grace_hopper")["same"] is True
    ask(service, "remove", name="grace_hopper")
    assert refused(protocol.pack_verify(hopper, name="grace_hopper"), service)["error"]["code"] == "not_found"
    ask(service, "enroll", images.read_image(REPO_KNOWN / "grace_hopper.jpg"), name="Grace")
    body = verify(service, hopper, name="Grace")
    assert (body["name"], body["same"]) == ("Grace", True)
