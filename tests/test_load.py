"""Overload and soak: memory stays bounded under a flood, and flat over 2,000 requests."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import pytest

from facewire.client.client import Client, ServerUnavailable
from facewire.faces import images
from facewire.process import ServerProcess

from .conftest import REPO_PROBES


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def server_pids(server: ServerProcess) -> list[int]:
    return server.processes()


def total_rss(server: ServerProcess) -> float:
    return sum(rss_mib(pid) for pid in server_pids(server))


def open_fds(server: ServerProcess) -> int:
    return sum(len(list(Path(f"/proc/{pid}/fd").iterdir())) for pid in server_pids(server))


@pytest.mark.slow
def test_a_flood_of_clients_keeps_memory_bounded(repo_gallery, tmp_path):
    portrait = cv2.resize(images.read_image(REPO_PROBES / "grace_hopper.jpg"), None, fx=2.5, fy=2.5)
    frame = cv2.copyMakeBorder(portrait, 15, 1080 - 15 - portrait.shape[0], 500, 1920 - 500 - portrait.shape[1],
                               cv2.BORDER_CONSTANT)  # 1920x1080: a 6 MB raw frame
    outcomes: list[tuple[int, int, int]] = []  # per client: named right, named wrong, timed out
    with ServerProcess(repo_gallery, tmp_path / "server.log", "--workers", "2") as server:
        idle = total_rss(server)
        peak, done = idle, threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, total_rss(server))
                time.sleep(0.1)

        def flood() -> None:
            right = wrong = timed_out = 0
            with Client(server.address, timeout=4, retries=0) as client:
                for outcome in client.recognize_many((frame for _ in range(20)), in_flight=4):
                    if isinstance(outcome, ServerUnavailable):
                        timed_out += 1
                    elif outcome.names == ["grace_hopper"]:
                        right += 1
                    else:
                        wrong += 1
            outcomes.append((right, wrong, timed_out))

        sampler = threading.Thread(target=sample)
        sampler.start()
        clients = [threading.Thread(target=flood) for _ in range(12)]
        for thread in clients:
            thread.start()
        for thread in clients:
            thread.join()
        done.set()
        sampler.join()
        with Client(server.address) as client:
            assert client.recognize(images.read_image(REPO_PROBES / "grace_hopper.jpg")).names == ["grace_hopper"]
    print(f"flood: 12 clients x 20 1080p requests, (right, wrong, timed out) each: {outcomes}; "
          f"RSS idle {idle:.0f} MiB, peak {peak:.0f} MiB")
    assert len(outcomes) == 12  # every client finished
    assert all(right + wrong + timed_out == 20 for right, wrong, timed_out in outcomes)  # every request accounted for
    assert sum(wrong for _, wrong, _ in outcomes) == 0
    assert sum(right for right, _, _ in outcomes) > 0  # it answered under the flood (4 s is short: most time out)
    assert peak < idle + 1024


@pytest.mark.slow
def test_soak_2000_requests(repo_gallery, tmp_path):
    pictures = [images.read_image(REPO_PROBES / n) for n in ("grace_hopper.jpg", "no_face.jpg", "group_small_faces.jpg")]
    expected = [["grace_hopper"], [], ["Unknown", "grace_hopper"]]
    with ServerProcess(repo_gallery, tmp_path / "server.log", "--workers", "2") as server:
        with Client(server.address, timeout=20) as client:
            def batch(count: int, start: int) -> int:
                stream = (pictures[i % 3] for i in range(start, start + count))
                results = client.recognize_many(stream, in_flight=4)
                return sum(sorted(r.names) != sorted(expected[i % 3]) for i, r in enumerate(results, start))

            wrong = batch(300, 0)  # warm-up: caches, allocator pools, connections
            rss_before, fds_before = total_rss(server), open_fds(server)
            started = time.monotonic()
            wrong += batch(1700, 300)
            seconds = time.monotonic() - started
            rss_after, fds_after = total_rss(server), open_fds(server)
        assert "Traceback" not in server.log() and "ERROR" not in server.log()
    growth = (rss_after - rss_before) / rss_before
    print(f"soak: 2000 requests, {wrong} wrong; RSS {rss_before:.0f} -> {rss_after:.0f} MiB ({growth:+.1%}); "
          f"fds {fds_before} -> {fds_after}; last 1700 in {seconds:.0f} s")
    assert wrong == 0
    assert growth < 0.10
    assert fds_after == fds_before
