"""Faults: workers killed or hung under load, and a server restarted under a client's feet."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import numpy as np
import pytest

from facewire.client.client import Client, ServerUnavailable
from facewire.faces import images
from facewire.process import ServerProcess, free_port
from facewire.wire.ping import answers_ping

from .conftest import REPO_PROBES
from .peers import wait_until

PROBES = ["grace_hopper.jpg", "group_small_faces.jpg", "no_face.jpg"]
EXPECTED = {"grace_hopper.jpg": ["grace_hopper"], "group_small_faces.jpg": ["Unknown", "grace_hopper"],
            "no_face.jpg": []}


def run_client(address: str, names: list[str], results: list, errors: list) -> None:
    pictures = {name: images.read_image(REPO_PROBES / name) for name in set(names)}
    try:
        # 4 clients x 2 in flight over 2 workers queue a request for up to ~4 s on a busy machine: a timeout
        # below that resends requests that are only queued, and the copies feed the queue they wait in.
        with Client(address, timeout=6, retries=8) as client:
            for outcome in client.recognize_many((pictures[n] for n in names), in_flight=2, annotate=False):
                results.append(outcome)
    except Exception as exc:  # noqa: BLE001 - the test reports whatever went wrong
        errors.append(exc)


@pytest.mark.slow
def test_200_requests_from_4_clients_survive_killed_and_hung_workers(repo_gallery, tmp_path):
    with ServerProcess(repo_gallery, tmp_path / "server.log", "--workers", "2", "--hang-timeout", "4") as server:
        plans = [[random.Random(c).choice(PROBES) for _ in range(50)] for c in range(4)]
        results: list[list] = [[] for _ in plans]
        errors: list[Exception] = []
        clients = [threading.Thread(target=run_client, args=(server.address, plan, out, errors))
                   for plan, out in zip(plans, results)]
        for thread in clients:
            thread.start()
        killed, stopped, chooser = 0, None, random.Random(7)
        while any(thread.is_alive() for thread in clients):
            time.sleep(chooser.uniform(1.0, 2.0))
            log = server.log()  # only a worker that has served is a victim: a kill must cost a request
            workers = [pid for pid in server.workers() if pid != stopped and f"[{pid}]: recognize" in log]
            if not workers:
                continue
            victim = chooser.choice(workers)
            if stopped is None:
                os.kill(victim, signal.SIGSTOP)  # hangs: only the watchdog can notice
                stopped = victim
            else:
                os.kill(victim, signal.SIGKILL)
                killed += 1
        for thread in clients:
            thread.join()
        log = server.log()
    assert not errors, errors
    for plan, got in zip(plans, results):
        assert len(got) == len(plan)  # none lost, none duplicated
        assert [sorted(r.names) for r in got] == [sorted(EXPECTED[name]) for name in plan]
    assert killed >= 3 and f"worker pid {stopped} has been" in log and "killing it" in log
    print(f"faults: 200 requests answered correctly; {killed} workers killed, 1 hung and replaced")


def test_clients_carry_on_across_a_server_restart(repo_gallery, tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    plan = PROBES * 10
    results: list = []
    errors: list = []
    first = ServerProcess(repo_gallery, tmp_path / "first.log", "--workers", "1", address=address)
    client = threading.Thread(target=run_client, args=(address, plan, results, errors))
    client.start()
    deadline = time.monotonic() + 60
    while len(results) < 5:  # the first server has answered some: now it dies mid-run
        assert time.monotonic() < deadline and client.is_alive(), f"no 5 answers in 60 s: {results} {errors}"
        time.sleep(0.05)
    first.process.kill()
    first.process.wait()
    second = ServerProcess(repo_gallery, tmp_path / "second.log", "--workers", "1", address=address)
    try:
        client.join(timeout=120)
    finally:
        second.stop()
    assert not client.is_alive(), "the client did not finish within 120 s of the restart"
    assert not errors, errors
    assert [sorted(r.names) for r in results] == [sorted(EXPECTED[name]) for name in plan]


def test_workers_stop_when_their_broker_is_killed(repo_gallery, tmp_path):
    server = ServerProcess(repo_gallery, tmp_path / "server.log", "--workers", "2")
    assert wait_until(lambda: len(server.spares()) == 1, 60), "the template has no spare"
    workers = server.processes()[1:]
    assert len(workers) == 4  # the template, its two workers and its spare
    server.process.kill()
    server.process.wait()
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{pid}") and "Z" not in open(f"/proc/{pid}/stat").read().split()[2]
              for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = [pid for pid in workers if os.path.exists(f"/proc/{pid}")
             and open(f"/proc/{pid}/stat").read().split()[2] != "Z"]
    assert alive == [], "orphaned workers outlived their broker"


def test_clients_giving_up_on_a_busy_server_do_not_crash_it(repo_gallery, tmp_path):
    """A client that times out closes its socket with requests still queued at the server.

    libzmq 4.3 aborts (`!_io_error`, stream_engine_base.cpp) if a heartbeat timer then fires on
    that connection on the server's side; a timed-out client must cost the server nothing.
    """
    picture = images.read_image(REPO_PROBES / "grace_hopper.jpg")
    big = np.ascontiguousarray(np.tile(picture, (3, 3, 1)))  # nine faces: a busy second or so each
    with ServerProcess(repo_gallery, tmp_path / "server.log", "--workers", "1") as server:
        with Client(server.address, timeout=0.3, retries=4) as client:
            outcomes = list(client.recognize_many([big] * 12, in_flight=8, annotate=False))
        assert any(isinstance(outcome, ServerUnavailable) for outcome in outcomes)  # it did give up
        deadline = time.monotonic() + 120
        while server.alive() and not answers_ping(server.address) and time.monotonic() < deadline:
            pass
        assert server.alive(), server.log()
        assert answers_ping(server.address, 30_000), server.log()
