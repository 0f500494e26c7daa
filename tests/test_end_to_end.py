"""End to end: the real server process, the real client (CLI and class), real photos, over ZeroMQ."""

from __future__ import annotations

import json
import re
import shutil
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq

from facewire.client.client import Client, ServerError
from facewire.faces import draw
from facewire.faces.settings import DetectorSettings
from facewire.process import ServerProcess, free_port
from facewire.serve import service as service_module
from facewire.serve.service import Service
from facewire.serve.worker import serve
from facewire.store.live import GalleryStore
from facewire.wire import protocol
from facewire.wire.transport import open_socket

from .conftest import REPO_KNOWN, REPO_PROBES, headless_env, run_client


def json_lines(stdout: str) -> dict[str, list[dict]]:
    return {Path(obj["image"]).name: obj["faces"] for obj in map(json.loads, stdout.splitlines())}


def raw_request(address: str, frames: list, timeout_ms: int = 10000) -> list[bytes] | None:
    """One request on a fresh REQ socket; None if no reply comes in time."""
    context = zmq.Context.instance()
    with context.socket(zmq.REQ) as socket:
        socket.setsockopt(zmq.LINGER, 0)
        socket.connect(address)
        socket.send_multipart(frames)
        return socket.recv_multipart() if socket.poll(timeout_ms) else None


def ping_ok(address: str) -> bool:
    reply = raw_request(address, protocol.pack_request("ping"))
    return reply is not None and json.loads(reply[0])["ok"] is True


# --- the user's path: python server.py, then python client.py IMAGE ---------------------------

def test_repo_samples_are_labelled(repo_server):
    done = run_client("--server", repo_server.address, "--json", "--no-show", str(REPO_PROBES), env=headless_env())
    assert done.returncode == 0, done.stderr
    faces = json_lines(done.stdout)
    assert [f["name"] for f in faces["grace_hopper.jpg"]] == ["grace_hopper"]
    assert sorted(f["name"] for f in faces["group_small_faces.jpg"]) == ["Unknown", "grace_hopper"]
    assert faces["no_face.jpg"] == []
    face = faces["grace_hopper.jpg"][0]
    assert 0 <= face["distance"] < 0.6 and len(face["box"]) == 4


def drawn_as_replied(image: np.ndarray, faces: list[dict]) -> np.ndarray:
    """What the reply's faces look like drawn on `image`: "name distance" for the known, "Unknown" otherwise."""
    labels = [draw.Label(tuple(face["box"]), f"{face['name']} {face['distance']:.2f}", True)
              if face["name"] != "Unknown" else draw.Label(tuple(face["box"]), "Unknown", False) for face in faces]
    return draw.annotate(image.copy(), labels)


def test_text_output_and_save_folder(repo_server, tmp_path):
    probe = REPO_PROBES / "grace_hopper.jpg"
    done = run_client("--server", repo_server.address, "--no-show", "--save", str(tmp_path), str(probe))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{probe}: grace_hopper"
    saved = cv2.imread(str(tmp_path / "grace_hopper.jpg")).astype(int)
    original = cv2.imread(str(probe))
    faces = json_lines(run_client("--server", repo_server.address, "--json", "--no-show", str(probe)).stdout)
    expected = drawn_as_replied(original, faces["grace_hopper.jpg"])
    drawn = np.abs(expected.astype(int) - original).max(axis=2) > 60  # the box and caption pixels
    assert drawn.sum() > 1000
    # The saved JPEG holds the box and the name: near what was drawn there, far from the photo's own pixels.
    assert np.abs(saved[drawn] - expected[drawn]).mean() * 4 < np.abs(saved[drawn] - original[drawn]).mean()


def test_the_annotated_image_shows_the_names_of_the_reply(repo_server):
    group = cv2.imread(str(REPO_PROBES / "group_small_faces.jpg"))
    with Client(repo_server.address) as client:
        result = client.recognize(group)
    assert sorted(result.names) == ["Unknown", "grace_hopper"]
    assert np.array_equal(result.image, drawn_as_replied(group, [face.to_json() for face in result.faces]))


def test_without_a_display_the_client_saves_and_says_where(repo_server, tmp_path):
    done = run_client("--server", repo_server.address, str(REPO_PROBES / "grace_hopper.jpg"),
                      cwd=tmp_path, env=headless_env())
    assert done.returncode == 0, done.stderr
    assert "no display" in done.stderr and "facewire-output" in done.stderr
    assert (tmp_path / "facewire-output" / "grace_hopper.jpg").is_file()


def test_ping_exit_codes(repo_server):
    assert run_client("--server", repo_server.address, "--ping").returncode == 0
    dead = run_client("--server", f"tcp://127.0.0.1:{free_port()}", "--ping", "--timeout", "0.3", "--retries", "1")
    assert dead.returncode == 2 and "no reply" in dead.stderr


def test_per_request_tolerance(repo_server):
    done = run_client("--server", repo_server.address, "--json", "--no-show", "--tolerance", "0.05",
                      str(REPO_PROBES / "grace_hopper.jpg"))
    assert [f["name"] for f in json_lines(done.stdout)["grace_hopper.jpg"]] == ["Unknown"]


def test_server_logs_ready_and_one_line_per_request(repo_server):
    assert "ready on" in repo_server.log() and "1 people, 1 photos" in repo_server.log()
    mark = repo_server.log_mark()
    probe = cv2.imread(str(REPO_PROBES / "grace_hopper.jpg"))[:411, :353]  # a size no other test sends
    with Client(repo_server.address) as client:
        client.recognize(probe)
    logged = repo_server.wait_for_log("recognize 353x411: grace_hopper in", since=mark)
    assert logged.count("recognize ") == 1


def check_shared_labels(address: str, shared_faces: Path) -> None:
    labels = json.loads((shared_faces / "labels.json").read_text())
    done = run_client("--server", address, "--json", "--no-show", str(shared_faces / "test"))
    assert done.returncode == 0, done.stderr
    found = json_lines(done.stdout)
    for image, expected in labels.items():
        if image.startswith("_"):
            continue
        names = [f["name"] for f in found[Path(image).name]]
        known_expected = Counter(n for n in expected if n != "unknown")
        known_found = Counter(n for n in names if n != "Unknown")
        assert known_found == known_expected, f"{image}: expected {expected}, got {names}"
        assert len(names) >= len(expected), f"{image}: a face was missed: {names}"
        assert all(0 <= f["confidence"] <= 1 for f in found[Path(image).name])


def test_shared_photos_get_every_expected_name(shared_server, shared_faces):
    check_shared_labels(shared_server.address, shared_faces)


def test_knn_matching_gets_every_expected_name_too(shared_faces, tmp_path):
    with ServerProcess(shared_faces / "known", tmp_path / "knn.log", "--match", "knn",
                       "--db", f"sqlite:///{tmp_path / 'cache.db'}") as server:
        check_shared_labels(server.address, shared_faces)


# --- the client class on other pixel layouts ------------------------------------------------

@pytest.mark.parametrize("layout", ["grey", "grey1", "bgra"])
def test_grey_and_bgra_images(repo_server, layout):
    bgr = cv2.imread(str(REPO_PROBES / "grace_hopper.jpg"))
    image = {
        "grey": cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY),
        "grey1": cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)[:, :, None],
        "bgra": cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA),
    }[layout]
    with Client(repo_server.address) as client:
        result = client.recognize(image)
    assert result.names == ["grace_hopper"]
    assert result.image.shape == bgr.shape  # the annotated image is always BGR
    assert {"detect", "encode", "match", "total"} <= set(result.timings_ms)


def test_results_without_the_image(repo_server):
    with Client(repo_server.address) as client:
        result = client.recognize(cv2.imread(str(REPO_PROBES / "grace_hopper.jpg")), annotate=False)
    assert result.names == ["grace_hopper"] and result.image is None


# --- compatibility with pyzmq's classic send_array / recv_array -----------------------------

def send_array(socket, array, flags=0):
    """As in pyzmq's serialization docs: JSON metadata, then the raw buffer."""
    socket.send_json(dict(dtype=str(array.dtype), shape=array.shape), flags | zmq.SNDMORE)
    return socket.send(array, flags)


def recv_array(socket, flags=0):
    metadata = socket.recv_json(flags=flags)
    message = socket.recv(flags=flags)
    return np.frombuffer(memoryview(message), dtype=metadata["dtype"]).reshape(metadata["shape"])


def test_the_original_demo_client_works_unchanged(repo_server):
    image = cv2.imread(str(REPO_PROBES / "group_small_faces.jpg"))
    with zmq.Context.instance().socket(zmq.REQ) as socket:
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVTIMEO, 20000)
        socket.connect(repo_server.address)
        send_array(socket, image)
        annotated = recv_array(socket)
    assert annotated.shape == image.shape and annotated.dtype == np.uint8
    assert not np.array_equal(annotated, image)


# --- bad input never hurts the server --------------------------------------------------------

def hdr(**fields) -> bytes:
    return json.dumps(fields).encode()


BAD_REQUESTS = {
    "one frame only": ([hdr(op="recognize", dtype="uint8", shape=[2, 2, 3])], "bad_request"),
    "three frames": ([hdr(op="recognize", dtype="uint8", shape=[1, 1, 3]), b"abc", b"x"], "bad_request"),
    "not json": ([b"\x00\x01binary", b"abc"], "bad_header"),
    "json array": ([b"[1, 2]", b"abc"], "bad_header"),
    "unknown op": ([hdr(op="format_disk")], "unknown_op"),
    "float dtype": ([hdr(op="recognize", dtype="float64", shape=[1, 1, 3]), b"\0" * 24], "bad_dtype"),
    "shape mismatch": ([hdr(op="recognize", dtype="uint8", shape=[10, 10, 3]), b"\0" * 299], "bad_shape"),
    "zero size": ([hdr(op="recognize", dtype="uint8", shape=[0, 0, 3]), b""], "bad_shape"),
    "negative": ([hdr(op="recognize", dtype="uint8", shape=[-5, 10, 3]), b"\0" * 10], "bad_shape"),
    "absurd": ([hdr(op="recognize", dtype="uint8", shape=[50000, 50000, 3]), b"\0" * 10], "too_large"),
    "two channels": ([hdr(op="recognize", dtype="uint8", shape=[1, 1, 2]), b"\0" * 2], "bad_shape"),
    "verify one image": ([hdr(op="verify", dtype="uint8", shape=[1, 1, 3]), b"abc"], "bad_request"),
    "verify name and two images": ([hdr(op="verify", dtype="uint8", shape=[1, 1, 3], name="obama"), b"abc", b"abc"],
                                   "bad_request"),
    "verify no shape2": ([hdr(op="verify", dtype="uint8", shape=[1, 1, 3]), b"abc", b"abc"], "bad_shape"),
    "verify shape2 mismatch": ([hdr(op="verify", dtype="uint8", shape=[1, 1, 3], shape2=[9, 9, 3]), b"abc", b"abc"],
                               "bad_shape"),
    "verify name not text": ([hdr(op="verify", dtype="uint8", shape=[1, 1, 3], name=["obama"]), b"abc"],
                             "bad_option"),
    "verify second not a png": ([hdr(op="verify", encoding="png"), b"\x89PNG\r\n\x1a\n", b"junk"], "bad_image"),
}


@pytest.mark.parametrize("name", list(BAD_REQUESTS))
def test_bad_requests_get_clear_error_replies(repo_server, name):
    frames, code = BAD_REQUESTS[name]
    reply = raw_request(repo_server.address, frames)
    assert reply is not None and len(reply) == 1
    body = json.loads(reply[0])
    assert body["ok"] is False and body["error"]["code"] == code and body["error"]["message"]
    assert ping_ok(repo_server.address) and repo_server.alive()
    assert "refused request: " + code in repo_server.log()


VERIFY_LINE = r"(same|different): distance 0\.\d{1,4} \(threshold 0\.6\)"


@pytest.mark.parametrize("images, name, decision", [
    (["known/obama/obama.jpg", "test/obama1.jpg"], None, "same"),
    (["known/obama/obama.jpg", "known/biden/biden.jpg"], None, "different"),
    (["test/obama1.jpg"], "obama", "same"),
    (["test/obama1.jpg"], "biden", "different"),
])
def test_the_client_verifies_two_photos_or_a_photo_against_a_name(shared_server, shared_faces, images, name, decision):
    named = [] if name is None else ["--name", name]
    done = run_client("--server", shared_server.address, "--verify", *[str(shared_faces / i) for i in images], *named)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    line = done.stdout.strip()
    assert re.fullmatch(VERIFY_LINE, line) and line.startswith(f"{decision}: "), line


@pytest.mark.parametrize("images, name, error", [
    (["known/obama/obama.jpg", "test/two_people.jpg"], None, "bad_photo: image 2 must show exactly one face; it shows 2"),
    ([REPO_PROBES / "no_face.jpg", "test/obama1.jpg"], None, "bad_photo: image 1 must show exactly one face; it shows 0"),
    (["test/obama1.jpg"], "nobody", "not_found: no person called nobody"),
    (["test/obama1.jpg", "missing.jpg"], None, "missing.jpg: No such file or directory"),
])
def test_a_verify_refused_or_unreadable_is_one_error_line_and_exit_status_1(shared_server, shared_faces, images,
                                                                           name, error):
    named = [] if name is None else ["--name", name]
    done = run_client("--server", shared_server.address, "--verify", *[str(shared_faces / i) for i in images], *named)
    assert done.returncode == 1 and done.stdout == "", done.stdout
    [line] = done.stderr.splitlines()
    assert line.startswith("error: ") and line.endswith(error), line
    assert ping_ok(shared_server.address) and shared_server.alive()


def test_the_client_class_verifies_over_every_wire_encoding(shared_server, shared_faces):
    obama = cv2.imread(str(shared_faces / "known" / "obama" / "obama.jpg"))
    obama1 = cv2.imread(str(shared_faces / "test" / "obama1.jpg"))
    for wire in ("raw", "jpeg", "png"):
        with Client(shared_server.address, wire=wire) as client:
            pair = client.verify(obama, obama1, tolerance=0.5)
            named = client.verify(obama1, name="obama")
        assert (pair["same"], pair["decision"], pair["threshold"]) == (True, "same", 0.5), wire
        assert len(pair["faces"]) == 2 and all(len(box) == 4 for box in pair["faces"])
        assert (named["name"], named["same"], len(named["faces"])) == ("obama", True, 1), wire
    mark = shared_server.log_mark()
    with Client(shared_server.address) as client, pytest.raises(ServerError) as refused:
        client.verify(obama, cv2.imread(str(shared_faces / "test" / "two_people.jpg")))
    assert refused.value.code == "bad_photo"
    shared_server.wait_for_log("refused verify: image 2 must show exactly one face; it shows 2", since=mark)


def test_oversized_frames_are_capped(repo_gallery, tmp_path):
    server = ServerProcess(repo_gallery, tmp_path / "server.log", "--max-megapixels", "0.1")
    try:
        # Within the transport cap but over the pixel limit: a clear error reply.
        big = np.zeros((300, 400, 3), np.uint8)
        body = json.loads(raw_request(server.address, protocol.pack_request("recognize", big))[0])
        assert body["error"]["code"] == "too_large"
        # Far over the transport cap (MAXMSGSIZE): ZeroMQ drops the peer, no reply, no harm.
        huge = np.zeros((1000, 1000, 3), np.uint8)
        assert raw_request(server.address, protocol.pack_request("recognize", huge), timeout_ms=1500) is None
        assert ping_ok(server.address) and server.alive()
    finally:
        server.stop()


def test_a_request_that_crashes_recognition_still_gets_a_reply(monkeypatch, tmp_path):
    empty_gallery = tmp_path / "empty"
    empty_gallery.mkdir()
    def explode(*args, **kwargs):
        raise RuntimeError("simulated detector failure")

    monkeypatch.setattr(service_module, "detect_faces", explode)
    service = Service(GalleryStore.prepared(f"sqlite:///{tmp_path / 'gallery.db'}", empty_gallery, DetectorSettings()))
    address = f"tcp://127.0.0.1:{free_port()}"
    context = zmq.Context()
    socket = open_socket(context, zmq.REP, address, bind=True, max_bytes=service.limits.max_frame_bytes, serving=True)
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(service, socket, stop))
    thread.start()
    try:
        with Client(address, timeout=5, retries=0) as client:
            with pytest.raises(ServerError) as info:
                client.recognize(np.zeros((50, 50, 3), np.uint8))
            assert info.value.code == "internal"
            assert client.ping()["ok"] is True
    finally:
        stop.set()
        thread.join()
        context.term()


# --- the client never hangs; unreadable files are reported ---------------------------------

def test_client_gives_up_on_a_silent_server_after_its_retries():
    context = zmq.Context.instance()
    with context.socket(zmq.ROUTER) as silent:
        port = silent.bind_to_random_port("tcp://127.0.0.1")
        finished: list = []
        client = threading.Thread(target=lambda: finished.append(run_client(
            "--server", f"tcp://127.0.0.1:{port}", "--no-show", "--timeout", "0.5", "--retries", "2",
            str(REPO_PROBES / "grace_hopper.jpg"))))
        client.start()
        arrivals = []
        while client.is_alive() or silent.poll(0):
            if silent.poll(100):
                silent.recv_multipart()
                arrivals.append(time.monotonic())
        done = finished[0]
    assert done.returncode == 2
    assert "no reply" in done.stderr and "3 attempt(s)" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(arrivals) == 3  # first try plus two resends on fresh sockets
    assert all(gap > 0.45 for gap in np.diff(arrivals))  # each resend waited for its 0.5 s timeout


@pytest.mark.parametrize("op", [["--ping"], ["--list"], ["--remove", "nobody"], ["--reload"]])
def test_one_shot_requests_are_resent_on_fresh_sockets_before_giving_up(op):
    context = zmq.Context.instance()
    with context.socket(zmq.ROUTER) as silent:
        port = silent.bind_to_random_port("tcp://127.0.0.1")
        finished: list = []
        client = threading.Thread(target=lambda: finished.append(run_client(
            "--server", f"tcp://127.0.0.1:{port}", "--timeout", "0.4", "--retries", "2", *op)))
        client.start()
        senders = []
        while client.is_alive() or silent.poll(0):
            if silent.poll(100):
                senders.append(silent.recv_multipart()[0])  # the peer's routing id: one per socket
        done = finished[0]
    assert done.returncode == 2 and "no reply" in done.stderr, done.stderr
    assert len(senders) == 3 and len(set(senders)) == 3  # the first try, then two resends, each on a new socket


def test_unreadable_images_are_reported_and_the_rest_still_run(repo_server, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    done = run_client("--server", repo_server.address, "--no-show", str(tmp_path / "missing.jpg"),
                      str(broken), str(REPO_PROBES / "grace_hopper.jpg"))
    assert done.returncode == 1
    assert "missing.jpg" in done.stderr and "broken.jpg: not a readable image" in done.stderr
    assert "Traceback" not in done.stderr
    assert "grace_hopper.jpg: grace_hopper" in done.stdout


# --- server life cycle -----------------------------------------------------------------------

def test_sigterm_stops_the_server_cleanly_and_the_database_makes_restarts_fast(tmp_path):
    known = tmp_path / "known"
    shutil.copytree(REPO_KNOWN, known, ignore=shutil.ignore_patterns(".*"))
    first = ServerProcess(known, tmp_path / "first.log")
    assert first.stop() == 0 and "stopped" in first.log()
    assert "1 files (0 unchanged, 1 added, 0 removed, 0 skipped, 0 refused)" in first.log()
    assert (known / ".facewire.db").is_file()
    second = ServerProcess(known, tmp_path / "second.log")
    try:
        assert "1 files (1 unchanged, 0 added, 0 removed, 0 skipped, 0 refused)" in second.log()
    finally:
        assert second.stop(signal.SIGINT) == 0


def test_cnn_detector_end_to_end(repo_gallery, tmp_path):
    with ServerProcess(repo_gallery, tmp_path / "cnn.log", "--detector", "cnn",
                       "--db", f"sqlite:///{tmp_path / 'c.db'}") as server:
        done = run_client("--server", server.address, "--json", "--no-show", "--timeout", "120",
                          str(REPO_PROBES / "group_small_faces.jpg"))
    assert done.returncode == 0, done.stderr
    names = [f["name"] for f in json_lines(done.stdout)["group_small_faces.jpg"]]
    assert sorted(names) == ["Unknown", "grace_hopper"]


def test_a_second_server_on_a_taken_address_says_so(repo_server, repo_gallery, tmp_path):
    with pytest.raises(RuntimeError) as info:
        ServerProcess(repo_gallery, tmp_path / "second.log", "--bind", repo_server.address)
    assert "cannot bind" in str(info.value) and "Traceback" not in str(info.value)


def test_an_image_over_the_server_limit_is_reported_and_the_run_goes_on(repo_gallery, tmp_path):
    with ServerProcess(repo_gallery, tmp_path / "server.log", "--max-megapixels", "0.2") as server:
        done = run_client("--server", server.address, "--no-show", str(REPO_PROBES / "no_face.jpg"),
                          str(REPO_PROBES / "grace_hopper.jpg"))
    assert done.returncode == 1
    assert "no_face.jpg: too_large" in done.stderr  # 600x400 is over 0.2 megapixels
    assert "grace_hopper.jpg: grace_hopper" in done.stdout  # 358x420 is not
