"""Every image accounted for: folder runs of the real client through server kills, restarts and a death.

Kill moments are random but chosen as states (after k results have arrived), never as
times, so the tests hold on a busy machine. Set FACEWIRE_SEED to replay a run; the seed
in use is printed (pytest -s) and named in every failure.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import numpy as np
import pytest
import zmq

from facewire.client.client import Client, Result, ServerUnavailable
from facewire.faces.images import ImageError
from facewire.process import ServerProcess, free_port
from facewire.wire import protocol

from .conftest import REPO_PROBES, ROOT, SHARED_FACES, everyone_gallery, headless_env, run_client

SEED = int(os.environ.get("FACEWIRE_SEED", time.time_ns() % 2**32))
KILLS = 3
# The client's default timeout: on a loaded machine a request can wait 10 s and more behind the 3
# others in flight, and a shorter timeout piles resent copies onto the server faster than it works
# them off, until the client gives up. 5 attempts (100 s) outlast a restart (seconds) by far.
TIMEOUT, RETRIES = 20, 4
WAIT = 180.0  # the deadline of any one wait, in seconds


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Path:
    """The repo's known_faces/ plus, when present, the shared people (linked, never copied)."""
    return everyone_gallery(tmp_path_factory.mktemp("accounting") / "known")


@pytest.fixture(scope="module")
def sources() -> list[Path]:
    """The repo's sample photos and, when present, the shared test photos."""
    return sorted(REPO_PROBES.glob("*.jpg")) + sorted((SHARED_FACES / "test").glob("*.jpg"))


def start_server(gallery: Path, log: Path, workers: str, address: str | None = None) -> ServerProcess:
    database = gallery.parent / "gallery.db"
    return ServerProcess(gallery, log, "--workers", workers, "--db", f"sqlite:///{database}", address=address)


def kill(server: ServerProcess) -> None:
    """SIGKILL the server, and remove the private folder that a killed broker leaves behind."""
    server.process.kill()
    server.process.wait()
    for private in re.findall(r"workers connect to ipc://(/\S+)/workers", server.log()):
        shutil.rmtree(private, ignore_errors=True)


@pytest.fixture(scope="module")
def expected(gallery, sources, tmp_path_factory) -> dict[str, list[str]]:
    """The sorted names a clean run (no kills) gives each source photo."""
    folder = tmp_path_factory.mktemp("clean")
    for source in sources:
        (folder / source.name).symlink_to(source)
    with start_server(gallery, folder.parent / "clean-server.log", "1") as server:
        done = run_client("--server", server.address, "--json", "--no-show", str(folder), env=headless_env())
    assert done.returncode == 0, done.stderr
    names = {Path(line["image"]).name: sorted(face["name"] for face in line["faces"])
             for line in map(json.loads, done.stdout.splitlines())}
    assert names["grace_hopper.jpg"] == ["grace_hopper"] and names["no_face.jpg"] == []
    assert names.keys() == {source.name for source in sources}
    return names


def image_folder(folder: Path, sources: list[Path], count: int, rng: random.Random) -> dict[str, str]:
    """`count` links to random sources under distinct names: {path as the client prints it: source name}."""
    folder.mkdir()
    origin = {}
    for index in range(count):
        source = rng.choice(sources)
        link = folder / f"{index:03d}-{source.name}"
        link.symlink_to(source)
        origin[str(link)] = source.name
    return origin


class Lines:
    """A pipe's lines, read by a thread, so that every wait for one has a deadline."""

    def __init__(self, pipe: IO[str]):
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(pipe,), daemon=True).start()

    def _read(self, pipe: IO[str]) -> None:
        for line in pipe:
            self.lines.put(line)
        self.lines.put(None)

    def next(self, what: str) -> str | None:
        """The next line, or None at the end of the output; fails after WAIT seconds."""
        try:
            return self.lines.get(timeout=WAIT)
        except queue.Empty:
            pytest.fail(f"seed {SEED}: no output from the client in {WAIT:g} s, waiting for {what}")


def start_client(folder: Path, address: str, stderr: IO[str], *options: str) -> subprocess.Popen:
    env = {**headless_env(), "PYTHONUNBUFFERED": "1"}  # each line as it is written, so kills follow results
    command = [sys.executable, str(ROOT / "client.py"), "--server", address, "--json", "--no-show",
               "--in-flight", "4", *options, str(folder)]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)


def error_paths(stderr: str) -> list[str]:
    """The image of each `error: PATH: message` line."""
    return [line.split(": ", 2)[1] for line in stderr.splitlines() if line.startswith("error: ")]


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["1", "2"])
def test_every_image_answered_once_across_server_kills(workers, gallery, sources, expected, tmp_path):
    rng = random.Random(f"{SEED}-{workers}")
    print(f"accounting: seed {SEED} (FACEWIRE_SEED={SEED} replays it)")
    origin = image_folder(tmp_path / "images", sources, rng.randint(40, 80), rng)
    kills = sorted(rng.sample(range(1, len(origin) - 10), KILLS))  # 10+ images still to come at each kill
    address = f"tcp://127.0.0.1:{free_port()}"
    server = start_server(gallery, tmp_path / "server-0.log", workers, address)
    stderr_path = tmp_path / "client.err"
    with open(stderr_path, "w") as stderr:
        client = start_client(tmp_path / "images", address, stderr, "--timeout", str(TIMEOUT),
                              "--retries", str(RETRIES))
    lines, answered = Lines(client.stdout), []
    try:
        for round_, k in enumerate(kills, 1):
            while len(answered) < k:
                line = lines.next(f"result {len(answered) + 1} (kill {round_} after {k})")
                assert line is not None, f"seed {SEED}: the client ended early: {stderr_path.read_text()}"
                answered.append(json.loads(line))
            assert client.poll() is None, f"seed {SEED}: the client finished before kill {round_}"
            kill(server)
            # The client is held while the new server starts: otherwise the readiness ping can queue behind
            # the client's resent requests until the client has finished its folder, before the next kill.
            # Its requests to the killed server stay lost, and it resends them once it goes on.
            client.send_signal(signal.SIGSTOP)
            try:
                server = start_server(gallery, tmp_path / f"server-{round_}.log", workers, address)
            finally:
                client.send_signal(signal.SIGCONT)
        while (line := lines.next(f"result {len(answered) + 1} (after the kills)")) is not None:
            answered.append(json.loads(line))
        status = client.wait(timeout=WAIT)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        server.stop()
    log = stderr_path.read_text()
    print(f"accounting: {len(origin)} images, --workers {workers}, killed after {kills} results")
    assert status == 0 and "error:" not in log, f"seed {SEED}: exit {status}\n{log}"
    assert "no reply" in log, f"seed {SEED}: no kill cost the client a reply"
    assert [line["image"] for line in answered] == sorted(origin), f"seed {SEED}: images lost or repeated"
    for line in answered:
        got = sorted(face["name"] for face in line["faces"])
        assert got == expected[origin[line["image"]]], f"seed {SEED}: {line['image']} named {got}"


def test_a_server_gone_for_good_leaves_one_error_line_per_unanswered_image(gallery, sources, tmp_path):
    origin = image_folder(tmp_path / "images", sources, 24, random.Random(SEED))
    broken = tmp_path / "images" / "012-broken.jpg"  # sorts among the images left unanswered
    broken.write_bytes(b"not a jpeg")
    everything = sorted([*origin, str(broken)])
    report = tmp_path / "report.csv"
    with start_server(gallery, tmp_path / "server.log", "1") as server, open(tmp_path / "err", "w") as err:
        client = start_client(tmp_path / "images", server.address, err, "--timeout", str(TIMEOUT),
                              "--retries", "1", "--report", str(report))
        lines, answered = Lines(client.stdout), []
        try:
            while len(answered) < 3:
                line = lines.next("the first results")
                assert line is not None, (tmp_path / "err").read_text()
                answered.append(json.loads(line)["image"])
            assert client.poll() is None, "the client finished before the kill"
            kill(server)
            while (line := lines.next("the rest of the output")) is not None:
                answered.append(json.loads(line)["image"])
            status = client.wait(timeout=WAIT)
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
    log = (tmp_path / "err").read_text()
    failed = error_paths(log)
    assert status == 2, log
    assert sorted(answered + failed) == everything, "every image: exactly one result or error line"
    assert str(broken) in failed and "not a readable" in log
    unanswered = len(failed) - 1
    assert unanswered >= 1 and f"{unanswered} of {len(everything)} image(s) unanswered" in log
    rows = list(csv.DictReader(report.open()))
    assert [file for file, _ in itertools.groupby(row["file"] for row in rows)] == everything
    assert sum("no reply" in row["error"] or "not sent" in row["error"] for row in rows) == unanswered


def test_recognize_many_yields_one_outcome_per_input_with_no_server():
    image, unreadable = np.zeros((32, 32, 3), np.uint8), ImageError("not a readable image")
    with Client(f"tcp://127.0.0.1:{free_port()}", timeout=0.2, retries=1) as client:
        outcomes = list(client.recognize_many([image] * 6 + [unreadable, image], in_flight=3))
    assert len(outcomes) == 8 and outcomes[6] is unreadable
    assert all(isinstance(outcome, ServerUnavailable) for outcome in outcomes[:6] + outcomes[7:])
    assert [str(o).startswith("not sent") for o in outcomes[:6]] == [False] * 3 + [True] * 3


def test_duplicate_and_stray_replies_count_once():
    """A faulty server answers every request twice, and once more with an id never sent: one outcome each."""
    router = zmq.Context.instance().socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            if router.poll(50):
                peer, _, *frames = router.recv_multipart()
                reply = protocol.pack_reply({"id": protocol.parse_request(frames).request_id, "faces": []})
                for answer in (reply, reply, protocol.pack_reply({"id": 10_000, "faces": []})):
                    router.send_multipart([peer, b"", *answer])

    server = threading.Thread(target=serve)
    server.start()
    try:
        with Client(f"tcp://127.0.0.1:{port}", timeout=10, retries=0) as client:
            outcomes = list(client.recognize_many([np.zeros((8, 8, 3), np.uint8)] * 12, annotate=False))
    finally:
        stop.set()
        server.join()
        router.close()
    assert len(outcomes) == 12 and all(isinstance(o, Result) and o.faces == [] for o in outcomes), outcomes
