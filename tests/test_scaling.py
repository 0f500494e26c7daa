"""Several workers (local and "remote"), pipelined clients, and compressed wire formats."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest
from PIL import Image

from facewire.client.client import Client, ServerError
from facewire.config import Config
from facewire.faces import images
from facewire.process import ROOT, ServerProcess, children, free_port
from facewire.serve.supervisor import WorkerPool, worker_command
from facewire.wire import protocol
from facewire.wire.ping import answers_ping

from .conftest import REPO_PROBES, run_client
from .peers import wait_until
from .test_end_to_end import raw_request


def worker_pids(log: str) -> set[str]:
    return set(re.findall(r"facewire\.serve\.service\[(\d+)\]: recognize", log))


def probes() -> list[np.ndarray]:
    return [images.read_image(REPO_PROBES / n) for n in ("grace_hopper.jpg", "group_small_faces.jpg", "no_face.jpg")]


@pytest.fixture(scope="module")
def two_workers(repo_gallery, tmp_path_factory):
    with ServerProcess(repo_gallery, tmp_path_factory.mktemp("w") / "server.log", "--workers", "2") as server:
        yield server


def until_both_served(served: Callable[[], int], batch: Callable[[], None], seconds: float = 60) -> int:
    """Run `batch` until `served()` says 2 workers answered, or `seconds` pass (ready proves only one)."""
    deadline = time.monotonic() + seconds
    while True:
        batch()
        if served() >= 2 or time.monotonic() > deadline:
            return served()


def test_pipelined_results_come_back_in_input_order_from_both_workers(two_workers):
    expected = [["grace_hopper"], ["grace_hopper", "Unknown"], []] * 6

    def batch() -> None:
        with Client(two_workers.address) as client:
            results = list(client.recognize_many(probes() * 6, in_flight=4, annotate=False))
        assert [sorted(r.names, reverse=True) for r in results] == expected

    assert until_both_served(lambda: len(worker_pids(two_workers.log())), batch) == 2


def test_errors_stay_in_their_place_in_a_pipeline(two_workers):
    good, grey = probes()[0], np.zeros((10, 10), np.uint8)
    unreadable = images.ImageError("x.jpg: not a readable image")
    with Client(two_workers.address) as client:
        results = list(client.recognize_many([good, unreadable, grey, good], in_flight=3))
    assert results[0].names == ["grace_hopper"] and results[1] is unreadable
    assert results[2].names == [] and results[3].names == ["grace_hopper"]


def test_workers_run_with_one_blas_thread_each(two_workers):
    workers = two_workers.workers()
    assert len(workers) == 2
    for pid in workers:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert b"OPENBLAS_NUM_THREADS=1" in environ and b"OMP_NUM_THREADS=1" in environ


def test_a_worker_that_dies_is_replaced(repo_gallery, tmp_path):
    with ServerProcess(repo_gallery, tmp_path / "server.log", "--workers", "2") as server:
        with Client(server.address) as client:
            list(client.recognize_many(probes() * 2, annotate=False))
            victim = int(sorted(worker_pids(server.log()))[0])
            os.kill(victim, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while "replacing it" not in server.log() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert f"(pid {victim}) exited" in server.log()
            results = list(client.recognize_many(probes() * 4, annotate=False))
        assert [r.names for r in results][:1] == [["grace_hopper"]]


def test_workers_on_other_hosts_connect_to_the_worker_address(repo_gallery, tmp_path):
    """`--workers 0` is a bare broker; two `--worker --connect` processes stand for two hosts."""
    worker_address = f"tcp://127.0.0.1:{free_port()}"
    with ServerProcess(repo_gallery, tmp_path / "broker.log", "--workers", "0",
                       "--worker-bind", worker_address, wait=False) as broker:
        logs = [open(tmp_path / f"host{i}.log", "w") for i in range(2)]
        hosts = [subprocess.Popen([sys.executable, str(ROOT / "server.py"), "--worker", "--connect", worker_address,
                                   "--known-faces", str(repo_gallery)], stdout=log, stderr=subprocess.STDOUT)
                 for log in logs]
        try:
            deadline = time.monotonic() + 60
            while not answers_ping(broker.address) and time.monotonic() < deadline:
                pass

            def batch() -> None:
                with Client(broker.address) as client:
                    results = list(client.recognize_many(probes() * 4, in_flight=4, annotate=False))
                assert [sorted(r.names) for r in results] == [["grace_hopper"], ["Unknown", "grace_hopper"], []] * 4

            def hosts_served() -> int:
                return sum("recognize " in (tmp_path / f"host{i}.log").read_text() for i in range(2))

            assert until_both_served(hosts_served, batch) == 2
        finally:
            for host in hosts:
                host.terminate()
                host.wait(timeout=10)


def test_a_worker_with_a_folder_serves_only_once_the_folder_is_in_its_gallery(repo_gallery, tmp_path):
    """The broker's own folder is empty: only the worker's start can put its folder's photos in its database."""
    worker_address = f"tcp://127.0.0.1:{free_port()}"
    (tmp_path / "empty").mkdir()
    with ServerProcess(tmp_path / "empty", tmp_path / "broker.log", "--workers", "0",
                       "--worker-bind", worker_address, wait=False) as broker:
        with open(tmp_path / "host.log", "w") as log:
            host = subprocess.Popen([sys.executable, str(ROOT / "server.py"), "--worker", "--connect", worker_address,
                                     "--known-faces", str(repo_gallery)], stdout=log, stderr=subprocess.STDOUT)
        try:
            with Client(broker.address, timeout=120) as client:  # sent at once: it waits for the worker
                assert client.recognize(probes()[0], annotate=False).names == ["grace_hopper"]
        finally:
            host.terminate()
            host.wait(timeout=10)


@pytest.mark.parametrize("wire", ["jpeg", "png"])
def test_compressed_wire_gives_the_same_names(two_workers, wire):
    done = run_client("--server", two_workers.address, "--json", "--no-show", "--wire", wire, str(REPO_PROBES))
    assert done.returncode == 0, done.stderr
    faces = {Path(o["image"]).name: sorted(f["name"] for f in o["faces"]) for o in map(json.loads, done.stdout.splitlines())}
    assert faces == {"grace_hopper.jpg": ["grace_hopper"], "group_small_faces.jpg": ["Unknown", "grace_hopper"],
                     "no_face.jpg": []}


def test_compressed_reply_image_is_decoded(two_workers):
    image = probes()[0]
    with Client(two_workers.address, wire="png") as client:
        result = client.recognize(image)
    assert result.image.shape == image.shape


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (a decompression bomb's calling card)."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")  # IHDR width and height
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # with a valid checksum
    return bytes(data)


def big_png() -> bytes:
    """A real, valid 8000x8000 PNG of zeros: about 200 KB that would inflate to 192 MB."""
    ok, data = cv2.imencode(".png", np.zeros((8000, 8000, 3), np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return data.tobytes()


@pytest.mark.parametrize(
    "encoding, payload, code",
    [
        ("png", png_declaring(100_000, 100_000), "too_large"),
        ("png", png_declaring(1, 1)[:30], "bad_image"),
        ("jpeg", b"\xff\xd8\xff\xe0" + b"\0" * 100, "bad_image"),
        ("jpeg", b"not a jpeg", "bad_image"),
        ("png", b"", "bad_image"),
    ],
    ids=["declared-bomb", "truncated-png", "broken-jpeg", "not-jpeg", "empty"],
)
def test_hostile_compressed_images_are_refused(two_workers, encoding, payload, code):
    reply = raw_request(two_workers.address, [json.dumps({"op": "recognize", "encoding": encoding}).encode(), payload])
    body = json.loads(reply[0])
    assert body["ok"] is False and body["error"]["code"] == code, body
    assert answers_ping(two_workers.address)


def test_a_real_png_bomb_is_refused_before_decoding(repo_gallery, tmp_path):
    with ServerProcess(repo_gallery, tmp_path / "server.log", "--workers", "1", "--max-megapixels", "40") as server:
        reply = raw_request(server.address, [json.dumps({"op": "recognize", "encoding": "png"}).encode(), big_png()])
        assert json.loads(reply[0])["error"]["code"] == "too_large"
        assert answers_ping(server.address)


def test_request_ids_are_echoed_even_on_errors(two_workers):
    with Client(two_workers.address) as client:
        body, _ = protocol.unpack_reply(client.request([json.dumps({"op": "ping", "id": "abc"}).encode()]))
        assert body["id"] == "abc"
        body, _ = protocol.unpack_reply(client.request([json.dumps({"op": "recognize", "id": 7}).encode()]))
        assert body["ok"] is False and body["id"] == 7
        with pytest.raises(ServerError):
            client.call([json.dumps({"op": "ping", "id": "x" * 500}).encode()])


def test_workers_are_forked_from_one_template_and_are_not_brokers(two_workers):
    [template] = children(two_workers.process.pid)
    assert wait_until(lambda: len(two_workers.spares()) == 1, 60), "the template has no spare"
    workers = children(template)
    assert sorted(workers) == sorted(two_workers.workers() + two_workers.spares()) and len(workers) == 3
    assert all(children(pid) == [] for pid in workers)
    # The template computes nothing: a process with (dlib's, OpenCV's) threads must not fork.
    assert len(list(Path(f"/proc/{template}/task").iterdir())) == 1


def mapped(pid: int, library: str) -> bool:
    """Whether a shared library whose file name contains `library` is mapped into the process."""
    return any(library in line for line in Path(f"/proc/{pid}/maps").read_text().splitlines())


def test_the_supervisor_loads_neither_dlib_nor_onnx_runtime(two_workers):
    """They cost the supervisor 0.4 s before it could start its template: only the template and workers need them."""
    [template] = children(two_workers.process.pid)
    worker = two_workers.workers()[0]
    for library in ("_dlib_pybind11", "onnxruntime_pybind11_state"):
        assert not mapped(two_workers.process.pid, library), library
        assert mapped(worker, library), library
    assert mapped(template, "_dlib_pybind11")


def test_a_worker_template_that_cannot_start_is_retried_with_a_growing_delay(tmp_path):
    config = Config(known_faces=tmp_path / "no-such-gallery", connect="ipc:///nowhere")
    pool = WorkerPool(worker_command(config), 1)
    try:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            pool.check()
            time.sleep(0.1)
        assert 1 < pool.spare.delay <= 8  # 1 s, then 2 s, 4 s...: not a tight loop
    finally:
        pool.stop()


def test_a_dead_worker_is_replaced_by_the_spare_and_a_new_spare_is_made(repo_gallery, tmp_path):
    with ServerProcess(repo_gallery, tmp_path / "server.log", "--workers", "2") as server:
        assert wait_until(lambda: len(server.spares()) == 1, 60), "the template has no spare"
        [spare] = server.spares()
        victim, survivor = server.workers()
        os.kill(victim, signal.SIGKILL)
        assert wait_until(lambda: sorted(server.workers()) == sorted([survivor, spare]), 30), server.workers()
        assert wait_until(lambda: len(server.spares()) == 1 and server.spares() != [spare], 60), server.spares()
        with Client(server.address, timeout=30) as client:
            names = client.recognize(images.read_image(REPO_PROBES / "grace_hopper.jpg"), annotate=False).names
        assert names == ["grace_hopper"]
        assert f"[{spare}]: worker {spare} serving" in server.wait_for_log(f"worker {spare} serving")
