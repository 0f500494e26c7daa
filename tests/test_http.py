"""The HTTP gateway end to end: the real server and the real gateway as processes on free loopback ports,
driven over HTTP (httpx) and WebSocket (websockets) like any client would."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from facewire.faces import images
from facewire.process import ROOT, GatewayProcess, ServerProcess, children, free_port, http_status
from facewire.wire.keys import make_keys

from .conftest import REPO_KNOWN, REPO_PROBES
from .poor_photos import png, poor_photos

WAIT = 120.0
"""Seconds a request may take on a busy 2-core machine before the test fails."""


@pytest.fixture(scope="module")
def gallery(shared_faces, tmp_path_factory) -> Path:
    """A copy of the shared gallery: these tests enrol and remove people."""
    target = tmp_path_factory.mktemp("http") / "known"
    shutil.copytree(shared_faces / "known", target)
    return target


@pytest.fixture(scope="module")
def server(gallery, tmp_path_factory):
    logs = tmp_path_factory.mktemp("http-logs")
    with ServerProcess(gallery, logs / "server.log", "--workers", "2", "--db", f"sqlite:///{logs / 'cache.db'}") as server:
        yield server


@pytest.fixture(scope="module")
def gateway(server, tmp_path_factory):
    with GatewayProcess(server.address, tmp_path_factory.mktemp("http-logs") / "gateway.log") as gateway:
        yield gateway


@pytest.fixture(scope="module")
def http(gateway):
    with httpx.Client(base_url=gateway.url, timeout=WAIT) as client:
        yield client


def photo(path: Path) -> dict[str, tuple[str, bytes, str]]:
    return {"image": (path.name, path.read_bytes(), "image/jpeg")}


def as_format(path: Path, suffix: str) -> bytes:
    ok, data = cv2.imencode(suffix, images.read_image(path))
    assert ok
    return data.tobytes()


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    """The response is the JSON error {"error": {"code", "message"}} with this status and code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json", response.headers
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"], body
    assert "Traceback" not in response.text
    return body


def expected_names(labels: list[str]) -> list[str]:
    return sorted(name for name in labels if name != "unknown")


def known_names(faces: list[dict]) -> list[str]:
    return sorted(face["name"] for face in faces if face["name"] != "Unknown")


def assert_detected_by_mtcnn(face: dict) -> None:
    """A face of a reply carries MTCNN's score (a probability) and its five landmarks, [x, y] inside the box."""
    assert isinstance(face["score"], float) and 0 < face["score"] <= 1, face
    top, right, bottom, left = face["box"]
    assert len(face["landmarks"]) == 5, face
    assert all(len(point) == 2 and left <= point[0] <= right and top <= point[1] <= bottom
               for point in face["landmarks"]), face


def test_every_shared_photo_is_named_as_labelled_with_requests_in_parallel(http, shared_faces):
    labels = {key: value for key, value in json.loads((shared_faces / "labels.json").read_text()).items()
              if not key.startswith("_")}

    def recognise(key: str) -> httpx.Response:
        return http.post("/v1/recognize", files=photo(shared_faces / key))

    with ThreadPoolExecutor(4) as pool:
        replies = dict(zip(labels, pool.map(recognise, labels)))
    for key, response in replies.items():
        assert response.status_code == 200, (key, response.text)
        body = response.json()
        assert known_names(body["faces"]) == expected_names(labels[key]), (key, body)
        assert sum(face["name"] == "Unknown" for face in body["faces"]) >= labels[key].count("unknown"), (key, body)
        height, width = images.read_image(shared_faces / key).shape[:2]
        for face in body["faces"]:
            top, right, bottom, left = face["box"]
            assert 0 <= top < bottom <= height and 0 <= left < right <= width, (key, face)
            assert 0 <= face["confidence"] <= 1 and face["distance"] >= 0, face
            assert_detected_by_mtcnn(face)
            assert face["decision"] in ("within tolerance", "margin", "ambiguous", "beyond ceiling"), face
            assert face["margin"] > 0 and face["quality"]["width"] == right - left, face
            assert face["quality"]["sharpness"] > 0 and -90 <= face["quality"]["yaw"] <= 90, face
        assert {"detect", "encode", "match", "total", "gateway"} <= set(body["timings_ms"]), body


def test_every_upload_format_gives_the_same_faces_whatever_its_name_and_declared_type(http, shared_faces):
    path = shared_faces / "test" / "two_people.jpg"
    first = http.post("/v1/recognize", files=photo(path)).json()
    assert known_names(first["faces"]) == ["biden", "obama"]
    for suffix in (".png", ".webp", ".bmp"):
        # a lying file name and content type: only the bytes count
        response = http.post("/v1/recognize", files={"image": ("photo.gif", as_format(path, suffix), "text/plain")})
        assert response.status_code == 200, (suffix, response.text)
        assert [(f["name"], f["box"]) for f in response.json()["faces"]] == \
               [(f["name"], f["box"]) for f in first["faces"]], suffix


def test_the_tolerance_is_passed_on(http, shared_faces):
    path = shared_faces / "test" / "two_people.jpg"
    strict = http.post("/v1/recognize", params={"tolerance": 0.01}, files=photo(path)).json()
    assert [face["name"] for face in strict["faces"]] == ["Unknown", "Unknown"]
    assert_error(http.post("/v1/recognize", params={"tolerance": 2.5}, files=photo(path)), 422, "invalid_request")
    assert_error(http.post("/v1/recognize", params={"tolerance": "loose"}, files=photo(path)), 422, "invalid_request")


def test_annotate_gives_the_photo_as_a_jpeg_with_its_faces_in_a_header(http, shared_faces):
    path = shared_faces / "test" / "kit_with_rose.jpg"
    response = http.post("/v1/annotate", files=photo(path))
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg", response.text[:300]
    annotated = images.decode_image(response.content)
    original = images.read_image(path)
    assert annotated.shape == original.shape
    assert np.abs(annotated.astype(int) - original.astype(int)).max() > 100  # boxes and captions were drawn
    result = json.loads(response.headers["x-facewire-result"])
    assert known_names(result["faces"]) == ["kit_harington", "rose_leslie"]
    for face in result["faces"]:
        assert_detected_by_mtcnn(face)


def test_enrol_list_recognise_and_remove_a_person(http, gallery):
    before = http.get("/v1/people").json()["people"]
    assert before == {person.name: len(list(person.iterdir())) for person in gallery.iterdir() if person.is_dir()}
    grace = REPO_PROBES / "grace_hopper.jpg"
    assert http.post("/v1/recognize", files=photo(grace)).json()["faces"][0]["name"] == "Unknown"

    response = http.post("/v1/people/Grace Hopper", files=photo(grace))
    assert response.status_code == 201 and response.json() == {"name": "Grace Hopper", "photos": 1}, response.text
    assert http.get("/v1/people").json()["people"] == {**before, "Grace Hopper": 1}
    assert http.post("/v1/recognize", files=photo(grace)).json()["faces"][0]["name"] == "Grace Hopper"
    thumbnail = http.get("/v1/people/Grace Hopper/photo")
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"] == "image/jpeg", thumbnail.text
    shown = images.decode_upload(thumbnail.content, 10**6)
    original = images.read_image(grace)
    assert max(shown.shape[:2]) == 160 and shown.shape[1] == round(original.shape[1] * 160 / max(original.shape[:2]))
    resized = cv2.resize(original, shown.shape[1::-1], interpolation=cv2.INTER_AREA)
    assert np.abs(shown.astype(int) - resized).mean() < 8  # the photo enrolled, not another

    response = http.delete("/v1/people/Grace Hopper")
    assert response.status_code == 200 and response.json() == {"name": "Grace Hopper", "removed": 1}, response.text
    assert http.get("/v1/people").json()["people"] == before
    assert_error(http.delete("/v1/people/Grace Hopper"), 404, "not_found")
    assert_error(http.get("/v1/people/Grace Hopper/photo"), 404, "not_found")


@pytest.mark.parametrize("name", [".hidden", "a%2Fb", "a\\b", "bell%07", "x" * 101, "%20"],
                         ids=["dot", "slash", "backslash", "control", "long", "blank"])
def test_bad_names_are_refused_as_the_zeromq_api_refuses_them(http, name):
    assert_error(http.post(f"/v1/people/{name}", files=photo(REPO_PROBES / "grace_hopper.jpg")), 400, "bad_name")
    assert_error(http.delete(f"/v1/people/{name}"), 400, "bad_name")
    if "%2F" not in name:  # a slash makes another path, which no route has
        assert_error(http.get(f"/v1/people/{name}/photo"), 400, "bad_name")


def test_bad_uploads_are_400_or_422_never_500(http, shared_faces):
    text = {"image": ("a.jpg", b"hello, not a picture", "image/jpeg")}
    assert_error(http.post("/v1/recognize", files=text), 400, "bad_image")
    assert_error(http.post("/v1/annotate", files=text), 400, "bad_image")
    truncated = (shared_faces / "test" / "obama1.jpg").read_bytes()
    assert_error(http.post("/v1/recognize", files={"image": ("t.jpg", truncated[:len(truncated) // 2], "image/jpeg")}),
                 400, "bad_image")
    assert_error(http.post("/v1/recognize", files={"image": ("e.jpg", b"", "image/jpeg")}), 400, "bad_image")
    assert_error(http.post("/v1/people/Nobody", files=photo(REPO_PROBES / "no_face.jpg")), 400, "bad_photo")
    assert_error(http.post("/v1/people/Nobody", files=photo(shared_faces / "test" / "two_people.jpg")), 400, "bad_photo")
    assert_error(http.post("/v1/recognize", files={"other": ("a.jpg", b"x", "image/jpeg")}), 422, "invalid_request")
    assert_error(http.post("/v1/recognize", content=b"{}", headers={"content-type": "application/json"}),
                 422, "invalid_request")
    assert_error(http.get("/v1/nothing-here"), 404, "not_found")
    assert_error(http.put("/v1/people"), 405, "method_not_allowed")
    assert http.get("/v1/people").status_code == 200  # and it still serves


def two_photos(first: Path, second: Path) -> dict[str, tuple[str, bytes, str]]:
    return {**photo(first), "image2": (second.name, second.read_bytes(), "image/jpeg")}


def test_verify_says_two_photos_of_obama_are_one_person_and_obama_and_biden_are_not(http, shared_faces):
    obama, obama1 = shared_faces / "known" / "obama" / "obama.jpg", shared_faces / "test" / "obama1.jpg"
    response = http.post("/v1/verify", files=two_photos(obama, obama1))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"same", "distance", "threshold", "decision", "faces"}
    assert (body["same"], body["decision"], body["threshold"]) == (True, "same", 0.6) and 0 < body["distance"] < 0.6
    for path, (top, right, bottom, left) in zip((obama, obama1), body["faces"], strict=True):
        height, width = images.read_image(path).shape[:2]
        assert 0 <= top < bottom <= height and 0 <= left < right <= width, (path, body)
    body = http.post("/v1/verify", files=two_photos(obama, shared_faces / "known" / "biden" / "biden.jpg")).json()
    assert (body["same"], body["decision"]) == (False, "different") and body["distance"] > 0.6, body


def test_verify_against_a_name_and_with_a_tolerance(http, shared_faces):
    probe = shared_faces / "test" / "obama1.jpg"
    same = http.post("/v1/verify", files=photo(probe), data={"name": "obama"}).json()
    assert (same["same"], same["decision"], len(same["faces"])) == (True, "same", 1), same
    assert http.post("/v1/verify", files=photo(probe), data={"name": "biden"}).json()["decision"] == "different"
    strict = http.post("/v1/verify", params={"tolerance": 0.1}, files=photo(probe), data={"name": "obama"}).json()
    assert (strict["same"], strict["threshold"], strict["distance"]) == (False, 0.1, same["distance"]), strict
    assert_error(http.post("/v1/verify", params={"tolerance": 2.5}, files=photo(probe), data={"name": "obama"}),
                 422, "invalid_request")


def test_verify_refuses_bad_photos_names_and_requests_clearly_and_keeps_serving(http, shared_faces):
    obama, two = shared_faces / "known" / "obama" / "obama.jpg", shared_faces / "test" / "two_people.jpg"
    body = assert_error(http.post("/v1/verify", files=two_photos(obama, two)), 400, "bad_photo")
    assert body["error"]["message"] == "image 2 must show exactly one face; it shows 2"
    body = assert_error(http.post("/v1/verify", files=two_photos(REPO_PROBES / "no_face.jpg", obama)), 400, "bad_photo")
    assert body["error"]["message"] == "image 1 must show exactly one face; it shows 0"
    body = assert_error(http.post("/v1/verify", files=photo(obama), data={"name": "nobody"}), 404, "not_found")
    assert body["error"]["message"] == "no person called nobody"
    assert_error(http.post("/v1/verify", files=photo(obama), data={"name": "../obama"}), 400, "bad_name")
    junk = {**photo(obama), "image2": ("b.jpg", b"not a picture", "image/jpeg")}
    body = assert_error(http.post("/v1/verify", files=junk), 400, "bad_image")
    assert body["error"]["message"] == "image2: not a JPEG, PNG, WebP or BMP image"
    assert_error(http.post("/v1/verify", files=two_photos(obama, obama), data={"name": "obama"}), 422,
                 "invalid_request")
    assert_error(http.post("/v1/verify", files=photo(obama)), 422, "invalid_request")
    assert_error(http.post("/v1/verify", data={"name": "obama"}), 422, "invalid_request")
    assert http.post("/v1/verify", files=photo(obama), data={"name": "obama"}).json()["same"] is True


def test_poor_photos_and_look_alikes_are_400_naming_the_reason(http, shared_faces):
    before = http.get("/v1/people").json()["people"]
    for kind, (image, reason) in poor_photos(shared_faces).items():
        body = assert_error(http.post("/v1/people/Nobody", files={"image": (f"{kind}.png", png(image), "image/png")}),
                            400, "bad_photo")
        assert re.fullmatch(reason, body["error"]["message"]), body
    body = assert_error(http.post("/v1/people/biden", files=photo(shared_faces / "known" / "obama" / "obama2.jpg")),
                        400, "bad_photo")
    assert re.fullmatch(r"the face is nearer obama's photos \(0\.\d\d\) than biden's own \(0\.\d\d\)",
                        body["error"]["message"]), body
    assert http.get("/v1/people").json()["people"] == before


def test_allow_poor_photos_enrols_and_syncs_them(tmp_path, shared_faces):
    gallery = tmp_path / "known"
    shutil.copytree(REPO_KNOWN, gallery, ignore=shutil.ignore_patterns(".*", "*.md"))
    poor = poor_photos(shared_faces)
    (gallery / "blurred").mkdir()
    (gallery / "blurred" / "one.png").write_bytes(png(poor["blurred"][0]))
    port = free_port()
    with ServerProcess(gallery, tmp_path / "server.log", "--workers", "1", "--db", f"sqlite:///{tmp_path / 'g.db'}",
                       "--http", f"127.0.0.1:{port}", "--allow-poor-photos") as server:
        url = f"http://127.0.0.1:{port}"
        wait_for_status(f"{url}/healthz", 200)
        response = httpx.post(f"{url}/v1/people/small", files={"image": ("s.png", png(poor["small"][0]), "image/png")},
                              timeout=WAIT)
        assert response.status_code == 201 and response.json() == {"name": "small", "photos": 1}, response.text
        assert httpx.get(f"{url}/v1/people", timeout=WAIT).json()["people"] == {
            "blurred": 1, "grace_hopper": 1, "small": 1}
        assert "0 skipped, 0 refused)" in server.log()


def test_healthz_gives_the_servers_status(http):
    response = http.get("/healthz")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ok",
                               "server": {"version": "0.1.0", "people": 5, "photos": 9, "detector": "mtcnn"}}


def test_the_api_is_described_at_docs_and_openapi_json(http):
    spec = http.get("/openapi.json").json()
    assert {"/v1/recognize", "/v1/annotate", "/v1/verify", "/v1/people", "/v1/people/{name}", "/healthz"} <= set(
        spec["paths"])
    verify = spec["paths"]["/v1/verify"]["post"]
    assert {"400", "401", "404", "413", "503"} <= set(verify["responses"]) and verify["security"]
    assert [parameter["name"] for parameter in verify["parameters"]] == ["tolerance"]
    [form] = verify["requestBody"]["content"]["multipart/form-data"]["schema"].values()
    form = spec["components"]["schemas"][form.rsplit("/", 1)[-1]]
    assert set(form["properties"]) == {"image", "image2", "name"} and form["required"] == ["image"]
    assert set(spec["components"]["schemas"]["Verified"]["properties"]) == {"same", "distance", "threshold",
                                                                            "decision", "faces"}
    assert set(spec["paths"]["/v1/people/{name}"]) == {"post", "delete"}
    assert "image/jpeg" in spec["paths"]["/v1/annotate"]["post"]["responses"]["200"]["content"]
    assert "413" in spec["paths"]["/v1/recognize"]["post"]["responses"]
    face = spec["components"]["schemas"]["Face"]["properties"]
    assert {"name", "distance", "confidence", "box", "score", "landmarks", "margin", "decision", "quality"} <= set(face)
    assert all(face[key]["description"] for key in ("margin", "decision", "quality"))
    quality = spec["components"]["schemas"]["FaceQuality"]["properties"]
    assert set(quality) == {"width", "sharpness", "yaw", "roll"} and quality["width"]["type"] == "integer"
    assert {"type": "number"} in face["score"]["anyOf"] and face["score"]["description"]
    point = face["landmarks"]["items"]
    assert face["landmarks"]["type"] == "array" and face["landmarks"]["description"]
    assert point["type"] == "array" and point["minItems"] == point["maxItems"] == 2
    assert all(item["type"] == "number" for item in point["prefixItems"])
    docs = http.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower() and "/openapi.json" in docs.text


def test_the_pages_and_their_files_are_served_and_nothing_else(http):
    for path, marker in (("/", 'id="photo"'), ("/gallery", 'id="people"'), ("/live", 'id="view"')):
        page = http.get(path)
        assert page.status_code == 200 and marker in page.text, path
        assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "function api(" in http.get("/static/facewire.js").text
    assert_error(http.get("/static/..%2Fapp.py"), 404, "not_found")
    assert_error(http.get("/static/nothing.js"), 404, "not_found")


@pytest.fixture(scope="module")
def small_gateway(server, tmp_path_factory):
    """A gateway with a pixel limit of 0.1 megapixels: uploads over 4 x 100,000 bytes + 64 KiB are refused."""
    with GatewayProcess(server.address, tmp_path_factory.mktemp("http-logs") / "small.log",
                        "--max-megapixels", "0.1") as gateway:
        yield gateway


def test_uploads_over_the_limit_are_413_by_content_length_and_by_counting(small_gateway):
    limit = 100_000 * 4 + 64 * 1024
    big = b"\xff\xd8\xff" + bytes(limit)  # over the limit whatever the multipart framing adds
    with httpx.Client(base_url=small_gateway.url, timeout=WAIT) as http:
        assert_error(http.post("/v1/recognize", files={"image": ("big.jpg", big, "image/jpeg")}), 413, "too_large")
        # a Content-Length over the limit is refused at once, before a byte of the body is sent
        host, port = small_gateway.bind.split(":")
        with socket.create_connection((host, int(port)), timeout=30) as raw:
            raw.sendall(b"POST /v1/recognize HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n"
                        b"Content-Type: multipart/form-data; boundary=x\r\n\r\n")
            assert raw.recv(1000).startswith(b"HTTP/1.1 413 ")

        def chunks():  # no Content-Length: the gateway counts the bytes as they come
            boundary = b"--x\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.jpg\"\r\n\r\n"
            yield boundary
            for _ in range(10):
                yield bytes(limit // 8)
            yield b"\r\n--x--\r\n"

        chunked = http.post("/v1/recognize", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
        assert "content-length" not in chunked.request.headers
        assert_error(chunked, 413, "too_large")
        # a small file of too many pixels is refused before its pixels are decoded, as over ZeroMQ
        many_pixels = cv2.imencode(".png", np.zeros((400, 400, 3), np.uint8))[1].tobytes()
        assert len(many_pixels) < limit
        assert_error(http.post("/v1/recognize", files={"image": ("p.png", many_pixels, "image/png")}), 413, "too_large")
        fits = cv2.imencode(".jpg", np.full((200, 200, 3), 128, np.uint8))[1].tobytes()
        assert_error(http.post("/v1/verify", files={"image": ("big.jpg", big, "image/jpeg"), "image2": ("f.jpg", fits)}),
                     413, "too_large")
        body = assert_error(http.post("/v1/verify", files={"image": ("fits.jpg", fits, "image/jpeg"),
                                                           "image2": ("p.png", many_pixels, "image/png")}),
                            413, "too_large")
        assert body["error"]["message"].startswith("image2: png image of 400x400 pixels exceeds the limit")
        response = http.post("/v1/recognize", files={"image": ("fits.jpg", fits, "image/jpeg")})
        assert response.status_code == 200 and response.json()["faces"] == [], response.text


def test_a_server_that_does_not_answer_gives_503_within_the_timeout(tmp_path):
    nowhere = f"tcp://127.0.0.1:{free_port()}"
    with GatewayProcess(nowhere, tmp_path / "gateway.log", "--timeout", "1", "--retries", "1") as gateway, \
            httpx.Client(base_url=gateway.url, timeout=WAIT) as http:
        started = time.monotonic()
        assert_error(http.post("/v1/recognize", files=photo(REPO_PROBES / "grace_hopper.jpg")), 503, "unavailable")
        assert time.monotonic() - started < 10
        assert_error(http.get("/v1/people"), 503, "unavailable")
        assert_error(http.delete("/v1/people/Ann"), 503, "unavailable")
        assert_error(http.post("/v1/verify", files=photo(REPO_PROBES / "grace_hopper.jpg"), data={"name": "Ann"}),
                     503, "unavailable")
        assert_error(http.get("/healthz"), 503, "unavailable")
        assert_error(http.post("/v1/recognize", files={"image": ("a.jpg", b"junk", "image/jpeg")}), 400, "bad_image")
    assert "Traceback" not in gateway.log()


WORKER_LINE = re.compile(r"^(\S+ \S+) INFO facewire\.serve\.service\[(\d+)\]: recognize \d+x\d+: .* in (\d+) ms$",
                         re.MULTILINE)


def busy_intervals(log: str) -> list[tuple[float, float]]:
    """(start, end) of each recognition in a server log: it ends when logged, after its reported time."""
    intervals = []
    for stamp, _, took in WORKER_LINE.findall(log):
        end = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        intervals.append((end - int(took) / 1000, end))
    return sorted(intervals)


def test_requests_are_in_flight_at_once_across_the_servers_workers(http, server, shared_faces):
    mark = server.log_mark()
    path = shared_faces / "test" / "obama-480p.jpg"
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: http.post("/v1/recognize", files=photo(path)), range(8)))
    assert all(r.status_code == 200 and known_names(r.json()["faces"]) == ["obama"] for r in replies)
    intervals = busy_intervals(server.wait_for_log("recognize", mark))  # each was logged before it was answered
    assert len(intervals) == 8, intervals
    # one request at a time could never overlap: each would start after the one before ended
    overlaps = sum(later[0] < earlier[1] - 0.005 for earlier, later in zip(intervals, intervals[1:]))
    assert overlaps >= 2, intervals


def test_the_live_websocket_names_each_frame_and_keeps_going_after_a_bad_one(gateway, shared_faces):
    frame = (shared_faces / "test" / "kit_with_rose.jpg").read_bytes()
    with connect(gateway.url.replace("http", "ws") + "/v1/live", open_timeout=WAIT) as live:
        for _ in range(3):
            live.send(frame)
            reply = json.loads(live.recv(timeout=WAIT))
            assert known_names(reply["faces"]) == ["kit_harington", "rose_leslie"], reply
            assert "gateway" in reply["timings_ms"] and "track" not in reply["faces"][0]
        live.send(b"not a frame")
        assert json.loads(live.recv(timeout=WAIT))["error"]["code"] == "bad_image"
        live.send("text")
        assert json.loads(live.recv(timeout=WAIT))["error"]["code"] == "bad_request"
        live.send(frame)
        assert known_names(json.loads(live.recv(timeout=WAIT))["faces"]) == ["kit_harington", "rose_leslie"]


@pytest.fixture(scope="module")
def token_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("token") / "token"
    path.write_text("s3cret-Token_1\n")
    path.chmod(0o600)
    return path


def test_off_loopback_every_call_needs_the_bearer_token(server, token_file, tmp_path, shared_faces):
    port = free_port()
    # bound on every interface, but only ever called over loopback
    with GatewayProcess(server.address, tmp_path / "gateway.log", "--token-file", str(token_file),
                        bind=f"0.0.0.0:{port}") as gateway:
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=WAIT) as http:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic czNjcmV0LVRva2VuXzE="},
                            {"Authorization": "Bearer s3cret-Token_"}):
                response = http.get("/v1/people", headers=headers)
                assert_error(response, 401, "unauthorized")
                assert response.headers["www-authenticate"] == "Bearer"
                assert_error(http.get("/healthz", headers=headers), 401, "unauthorized")
                assert_error(http.post("/v1/recognize", headers=headers, files=photo(REPO_PROBES / "no_face.jpg")),
                             401, "unauthorized")
                assert_error(http.delete("/v1/people/obama", headers=headers), 401, "unauthorized")
                assert_error(http.post("/v1/verify", headers=headers, files=photo(REPO_PROBES / "no_face.jpg"),
                                       data={"name": "obama"}), 401, "unauthorized")
            good = {"Authorization": "Bearer s3cret-Token_1"}
            assert http.get("/v1/people", headers=good).json()["people"]["obama"] == 2
            assert http.get("/healthz", headers=good).status_code == 200
            verified = http.post("/v1/verify", headers=good, files=photo(shared_faces / "test" / "obama1.jpg"),
                                 data={"name": "obama"})
            assert verified.status_code == 200 and verified.json()["same"] is True, verified.text
            assert http.get("/").status_code == 200  # the pages hold no data: they ask for the token
        ws = f"ws://127.0.0.1:{port}/v1/live"
        for offer in ([], ["facewire", "bearer.wrong"]):
            with pytest.raises(InvalidStatus) as refused:
                connect(ws, subprotocols=offer or None, open_timeout=WAIT)
            assert refused.value.response.status_code == 403
        frame = (shared_faces / "test" / "obama-240p.jpg").read_bytes()
        with connect(ws, subprotocols=["facewire", "bearer.s3cret-Token_1"], open_timeout=WAIT) as live:
            assert live.subprotocol == "facewire"
            live.send(frame)
            assert known_names(json.loads(live.recv(timeout=WAIT))["faces"]) == ["obama"]
        with connect(ws, additional_headers={"Authorization": "Bearer s3cret-Token_1"}, open_timeout=WAIT) as live:
            live.send(frame)
            assert known_names(json.loads(live.recv(timeout=WAIT))["faces"]) == ["obama"]
    assert "s3cret" not in gateway.log()


def test_cors_only_for_the_origins_given(server, tmp_path):
    with GatewayProcess(server.address, tmp_path / "gateway.log", "--cors", "https://app.example") as gateway, \
            httpx.Client(base_url=gateway.url, timeout=WAIT) as http:
        allowed = http.options("/v1/people", headers={"Origin": "https://app.example",
                                                      "Access-Control-Request-Method": "GET"})
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        other = http.get("/v1/people", headers={"Origin": "https://elsewhere.example"})
        assert "access-control-allow-origin" not in other.headers
    with GatewayProcess(server.address, tmp_path / "plain.log") as gateway, \
            httpx.Client(base_url=gateway.url, timeout=WAIT) as http:
        response = http.get("/v1/people", headers={"Origin": "https://app.example"})
        assert response.status_code == 200 and "access-control-allow-origin" not in response.headers


def gateway_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facewire.http", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=WAIT)


def test_off_loopback_the_gateway_and_the_server_refuse_to_start_without_a_token(repo_gallery, tmp_path):
    port = free_port()
    done = gateway_command("--server", "tcp://127.0.0.1:9", "--bind", f"0.0.0.0:{port}")
    assert done.returncode == 2 and "--token-file" in done.stderr and "other hosts" in done.stderr, done.stderr
    assert http_status(f"http://127.0.0.1:{port}/openapi.json") is None
    empty = tmp_path / "empty"
    empty.write_text("\n")
    done = gateway_command("--bind", f"0.0.0.0:{port}", "--token-file", str(empty))
    assert done.returncode == 2 and "must hold one token" in done.stderr, done.stderr
    for bad in ("nonsense", "127.0.0.1:http"):
        done = gateway_command("--bind", bad)
        assert done.returncode == 2 and "HOST:PORT" in done.stderr, done.stderr
    done = subprocess.run([sys.executable, str(ROOT / "server.py"), "--known-faces", str(repo_gallery), "--workers", "1",
                           "--bind", f"tcp://127.0.0.1:{free_port()}", "--http", f"0.0.0.0:{port}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 2 and "--http-token-file" in done.stderr, done.stderr


def wait_for_status(url: str, status: int | None, within: float = WAIT) -> None:
    deadline = time.monotonic() + within
    while http_status(url) != status:
        assert time.monotonic() < deadline, f"{url} did not give {status} within {within} s"
        time.sleep(0.1)


def gateway_children(server: ServerProcess) -> list[int]:
    return [pid for pid in children(server.process.pid)
            if b"facewire.http" in Path(f"/proc/{pid}/cmdline").read_bytes()]


@pytest.mark.parametrize("workers", ["2", "1"])
def test_server_http_starts_the_gateway_beside_it_and_stops_it_with_sigterm(repo_gallery, tmp_path, workers):
    port = free_port()
    server = ServerProcess(repo_gallery, tmp_path / "server.log", "--workers", workers,
                           "--db", f"sqlite:///{tmp_path / 'cache.db'}", "--http", f"127.0.0.1:{port}")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_status(f"{url}/healthz", 200)
        response = httpx.post(f"{url}/v1/recognize", files=photo(REPO_PROBES / "group_small_faces.jpg"), timeout=WAIT)
        assert sorted(face["name"] for face in response.json()["faces"]) == ["Unknown", "grace_hopper"]
        [pid] = gateway_children(server)
        assert server.stop() == 0
        assert http_status(f"{url}/healthz") is None
        assert not Path(f"/proc/{pid}").exists()
        log = server.log()
        assert "HTTP gateway stopped" in log and "Traceback" not in log, log
    finally:
        server.stop()


def test_the_gateway_is_started_again_if_it_dies_and_stops_by_itself_if_its_server_is_killed(repo_gallery, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/healthz"
    server = ServerProcess(repo_gallery, tmp_path / "server.log", "--workers", "1",
                           "--db", f"sqlite:///{tmp_path / 'cache.db'}", "--http", f"127.0.0.1:{port}")
    second = None
    try:
        wait_for_status(url, 200)
        [first] = gateway_children(server)
        mark = server.log_mark()
        subprocess.run(["kill", "-9", str(first)], check=True)
        server.wait_for_log("HTTP gateway started", mark, within=WAIT)
        wait_for_status(url, 200)
        [second] = gateway_children(server)
        assert second != first
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        wait_for_status(url, None, within=30)  # the gateway saw its server go, and stopped
        deadline = time.monotonic() + 30
        while running_gateway(second):
            assert time.monotonic() < deadline, "the orphaned gateway is still running"
            time.sleep(0.1)
    finally:
        server.stop()
        for pid in [second] if second and running_gateway(second) else []:
            os.kill(pid, signal.SIGKILL)


def running_gateway(pid: int) -> bool:
    """True while `pid` is a gateway (not gone, nor a zombie, nor a new process under a reused pid)."""
    try:
        return b"facewire.http" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_a_gateway_with_curve_keys_talks_to_a_curve_server(repo_gallery, tmp_path):
    make_keys(tmp_path / "keys", ["gateway"])
    keys = tmp_path / "keys"
    with ServerProcess(repo_gallery, tmp_path / "server.log", "--workers", "1", "--keys", str(keys),
                       "--db", f"sqlite:///{tmp_path / 'cache.db'}", wait=False) as server, \
            GatewayProcess(server.address, tmp_path / "gateway.log", "--key", str(keys / "gateway.key_secret"),
                           "--server-key", str(keys / "server.key"), "--timeout", "5", "--retries", "0") as gateway, \
            GatewayProcess(server.address, tmp_path / "stranger.log", "--timeout", "2", "--retries", "0") as stranger:
        response = httpx.post(f"{gateway.url}/v1/recognize", files=photo(REPO_PROBES / "grace_hopper.jpg"), timeout=WAIT)
        assert [face["name"] for face in response.json()["faces"]] == ["grace_hopper"], response.text
        assert httpx.get(f"{gateway.url}/healthz", timeout=WAIT).status_code == 200
        assert_error(httpx.get(f"{stranger.url}/v1/people", timeout=WAIT), 503, "unavailable")  # no keys: silence
