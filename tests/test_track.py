"""Track tokens: a hint can only name a face as the server itself named it, recently, at that box."""

from __future__ import annotations

import base64
import json
import re
import time

import cv2
import numpy as np
import pytest

from facewire.client.client import Client, ServerError
from facewire.faces import images
from facewire.faces.matching import Match
from facewire.faces.settings import DetectorSettings
from facewire.process import ServerProcess
from facewire.serve.service import Service
from facewire.serve.track import TTL_SECONDS, Tracker, Vouch
from facewire.store.live import GalleryStore
from facewire.wire import protocol

from .conftest import REPO_PROBES


def flipped(token: str, index: int) -> str:
    """The token with one character changed (still base64url, so only the HMAC can tell)."""
    return token[:index] + ("A" if token[index] != "A" else "B") + token[index + 1:]


def rebox(token: str, box: list[int]) -> str:
    """A genuine token whose payload is moved to another box, its HMAC kept."""
    payload, mac = token.split(".")
    fields = json.loads(base64.urlsafe_b64decode(payload))
    fields[2] = box
    return base64.urlsafe_b64encode(json.dumps(fields).encode()).decode() + "." + mac


# --- the tokens themselves ----------------------------------------------------------------------

def test_a_token_proves_what_was_issued_and_nothing_else():
    tracker = Tracker(clock=lambda: 1000.0)
    vouch = Vouch.of(Match("Zoë", 0.31234567, 0.7), (10, 60, 60, 10), 0.6, 999.0)
    token = tracker.issue(vouch)
    assert tracker.verify(token) == vouch and vouch.distance == 0.3123
    assert all(tracker.verify(flipped(token, i)) is None for i in range(len(token)))
    assert tracker.verify(rebox(token, [100, 160, 160, 100])) is None
    assert Tracker(clock=lambda: 1000.0).verify(token) is None  # another server's secret
    forged = Tracker(clock=lambda: 1000.0).issue(Vouch("mallory", 0.1, (10, 60, 60, 10), 0.6, 999.0))
    assert tracker.verify(forged) is None
    for junk in ("", ".", "mallory", "a.b", token + ".x", "é" + token, token.split(".")[0]):
        assert tracker.verify(junk) is None


def test_a_token_expires_ttl_seconds_after_the_face_was_encoded():
    now = [1000.0]
    tracker = Tracker(clock=lambda: now[0])
    token = tracker.issue(Vouch("ann", 0.3, (10, 60, 60, 10), 0.6, 1000.0))
    now[0] = 1000.0 + TTL_SECONDS
    assert tracker.verify(token) is not None
    now[0] += 0.01
    assert tracker.verify(token) is None
    now[0] = 999.0  # issued "in the future": the clock went back
    assert tracker.verify(token) is None


# --- the service, with an injectable clock: no sleeping -----------------------------------------

@pytest.fixture(scope="module")
def clocked(repo_gallery, tmp_path_factory):
    """A Service over the repo gallery (grace_hopper) whose tracker reads `now[0]`."""
    now = [1_000_000.0]
    database = f"sqlite:///{tmp_path_factory.mktemp('track') / 'gallery.db'}"
    store = GalleryStore.prepared(database, repo_gallery, DetectorSettings())
    return Service(store, tracker=Tracker(clock=lambda: now[0])), now


def handle(service: Service, image: np.ndarray, **options) -> list[dict]:
    body, _ = protocol.unpack_reply(service.handle(protocol.pack_request("recognize", image, annotate=False,
                                                                         **options)))
    assert body["ok"], body
    return body["faces"]


def test_service_reuses_a_token_until_it_expires_and_reuse_does_not_renew_it(clocked):
    service, now = clocked
    image = images.read_image(REPO_PROBES / "grace_hopper.jpg")
    [first] = handle(service, image)
    assert first["name"] == "grace_hopper" and first["tracked"] is False
    now[0] += TTL_SECONDS / 2
    [second] = handle(service, image, track=[first["track"]])
    assert second["tracked"] is True and second["name"] == "grace_hopper"
    assert second["distance"] == first["distance"]
    assert second["track"] == first["track"]  # same box, same time of encoding: reuse does not renew it
    now[0] += TTL_SECONDS / 2 + 0.01  # both tokens date from the first (encoding) request
    for token in (first["track"], second["track"]):
        [again] = handle(service, image, track=[token])
        assert again["tracked"] is False and again["name"] == "grace_hopper"
    [renewed] = handle(service, image, track=[again["track"]])  # a fresh encoding renews it
    assert renewed["tracked"] is True


def test_service_ignores_forged_and_foreign_tokens(clocked):
    service, now = clocked
    image = images.read_image(REPO_PROBES / "grace_hopper.jpg")
    [face] = handle(service, image)
    stranger = Tracker(clock=lambda: now[0])
    forged = stranger.issue(Vouch("mallory", 0.01, tuple(face["box"]), 0.6, now[0]))
    for track in ([forged], [flipped(face["track"], 5)], [flipped(face["track"], -5)], ["mallory"], ["a.b"]):
        [again] = handle(service, image, track=track)
        assert again["name"] == "grace_hopper" and again["tracked"] is False
    [stricter] = handle(service, image, track=[face["track"]], tolerance=0.3)  # named under 0.6: not reused
    assert stricter["tracked"] is False


def test_tokens_are_short_enough_to_send_back_and_only_ascii():
    box = (10**7, 10**7, 10**7, 10**7)
    token = Tracker().issue(Vouch("\N{CJK UNIFIED IDEOGRAPH-4E00}" * 85, 1.2345, box, 0.6, 1e10))
    assert token is not None and token.isascii() and len(token) <= protocol.MAX_TOKEN_LENGTH


# --- the real server: two workers sharing one secret ---------------------------------------------

@pytest.fixture(scope="module")
def two_workers(shared_faces, tmp_path_factory):
    folder = tmp_path_factory.mktemp("track-server")
    with ServerProcess(shared_faces / "known", folder / "server.log", "--workers", "2",
                       "--db", f"sqlite:///{folder / 'cache.db'}") as server:
        yield server


@pytest.fixture(scope="module")
def two_people(shared_faces) -> np.ndarray:
    return images.read_image(shared_faces / "test" / "two_people.jpg")


def ask(client: Client, image: np.ndarray, **options) -> list[dict]:
    body, _ = client.call(protocol.pack_request("recognize", image, annotate=False, **options))
    return sorted(body["faces"], key=lambda face: face["name"])


def test_forged_hints_are_never_reflected_as_names(two_workers, two_people):
    with Client(two_workers.address) as client:
        biden, obama = ask(client, two_people)
        assert (biden["name"], obama["name"]) == ("biden", "obama") and biden["track"] and obama["track"]
        forged = Tracker().issue(Vouch("mallory", 0.01, tuple(obama["box"]), 0.6, time.time()))
        hints = {
            "another server's secret": [forged],
            "a flipped byte": [flipped(obama["track"], 3), flipped(obama["track"], -3)],
            "biden's token moved to obama's box": [rebox(biden["track"], obama["box"])],
            "malformed": ["", "mallory", "a.b", "x" * protocol.MAX_TOKEN_LENGTH],
        }
        for why, track in hints.items():
            faces = ask(client, two_people, track=track)
            assert [(f["name"], f["tracked"]) for f in faces] == [("biden", False), ("obama", False)], why
        faces = ask(client, two_people, track=[biden["track"]])  # genuine, but only for biden's box
        assert [(f["name"], f["tracked"]) for f in faces] == [("biden", True), ("obama", False)]
        for plain in ([{"box": obama["box"], "name": "mallory", "distance": 0.1}], "mallory", [obama["track"]] * 33,
                      ["x" * (protocol.MAX_TOKEN_LENGTH + 1)], [7]):
            with pytest.raises(ServerError) as refused:
                ask(client, two_people, track=plain)
            assert refused.value.code == "bad_option"


def answered_by(log: str, width: int, height: int) -> int:
    """The pid of the worker that logged the request for an image of this size."""
    [pid] = re.findall(rf"\[(\d+)\]: recognize {width}x{height}:", log)
    return int(pid)


def test_a_token_from_one_worker_is_accepted_by_the_other(two_workers, two_people):
    height, width = two_people.shape[:2]
    pairs = set()
    with Client(two_workers.address) as client:
        for attempt in range(6):  # each image a unique size, so the log tells which worker answered it
            first = ask(client, cv2.copyMakeBorder(two_people, 0, 2 * attempt + 1, 0, 0, cv2.BORDER_CONSTANT))
            again = ask(client, cv2.copyMakeBorder(two_people, 0, 2 * attempt + 2, 0, 0, cv2.BORDER_CONSTANT),
                        track=[face["track"] for face in first])
            assert [(f["name"], f["tracked"]) for f in again] == [("biden", True), ("obama", True)]
            log = two_workers.log()
            pairs.add(tuple(answered_by(log, width, height + 2 * attempt + n) for n in (1, 2)))
            if any(issuer != reuser for issuer, reuser in pairs):
                break
    assert any(issuer != reuser for issuer, reuser in pairs), f"one worker answered everything: {pairs}"
