#!/usr/bin/env python3
"""Worker replacement: from the moment every local worker is killed to the first reply.

A server with two local workers is started on the repo's gallery. Each round SIGKILLs
both workers at once and times how long until a ping is answered: only a replacement can
answer it (pings go every 10 ms, each on a fresh socket, so the measure is within 10 ms).
Rounds run on an idle machine and beside two busy processes (`while 1: pass`), for each
server given (another checkout's server.py gives the "before" column).

    .venv/bin/python bench/bench_respawn.py [--rounds 10] [--server before=/path/to/old/server.py]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import zmq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from facewire.process import children, free_port, is_spare  # noqa: E402
from facewire.wire import protocol  # noqa: E402


def workers(broker: int) -> list[int]:
    """The processes below the broker that have no children: its workers, forked or spawned
    (not a template's spare, which serves only once a worker is gone)."""
    leaves, todo = [], children(broker)
    while todo:
        pid = todo.pop()
        below = children(pid)
        todo += below
        if not below and not is_spare(pid):
            leaves.append(pid)
    return leaves


def answered_ms(address: str, attempt_ms: int = 10, deadline_s: float = 120) -> float:
    """Milliseconds from now until the server answers a ping; a ping lost with a dead worker is
    sent again on a fresh socket every `attempt_ms`, as a client's lazy-pirate retry would."""
    started = time.perf_counter()
    while time.perf_counter() - started < deadline_s:
        with zmq.Context.instance().socket(zmq.REQ) as socket:
            socket.setsockopt(zmq.LINGER, 0)
            socket.connect(address)
            socket.send_multipart(protocol.pack_request("ping"))
            if socket.poll(attempt_ms):
                socket.recv_multipart()
                return (time.perf_counter() - started) * 1000
    raise RuntimeError(f"no reply in {deadline_s} s")


def wait_for_workers(broker: int, log: Path, count: int, old: set[int], deadline_s: float = 120) -> list[int]:
    """Wait until `count` new workers run and have logged that they serve."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        pids = [pid for pid in workers(broker) if pid not in old]
        text = log.read_text()
        if len(pids) == count and all(f"worker {pid} serving" in text for pid in pids):
            return pids
        time.sleep(0.05)
    raise RuntimeError(f"{count} workers not serving within {deadline_s} s:\n{log.read_text()[-2000:]}")


def rounds(server: Path, known: Path, folder: Path, count: int) -> list[float]:
    """Start the server, then kill all its workers `count` times, timing the first reply each time."""
    address = f"tcp://127.0.0.1:{free_port()}"
    log = folder / f"{server.parent.name}.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, str(server), "--known-faces", str(known), "--bind", address,
                                    "--workers", "2"], stdout=out, stderr=subprocess.STDOUT, cwd=server.parent)
    try:
        answered_ms(address)
        current = wait_for_workers(process.pid, log, 2, set())
        times = []
        for _ in range(count):
            for pid in current:
                os.kill(pid, signal.SIGKILL)
            times.append(answered_ms(address))
            current = wait_for_workers(process.pid, log, 2, set(current))
        return times
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def busy(processes: int) -> Iterator[None]:
    spinners = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(processes)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--server", action="append", default=[], metavar="LABEL=SERVER.PY",
                        help="another server.py to compare (e.g. an older checkout)")
    args = parser.parse_args()
    servers = {"this checkout": ROOT / "server.py"}
    servers.update(dict((label, Path(path)) for label, path in (item.split("=", 1) for item in args.server)))
    print("| server | machine | rounds | death to first reply, median ms | max ms |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        known = Path(tmp) / "known"
        shutil.copytree(ROOT / "known_faces", known, ignore=shutil.ignore_patterns(".*", "*.md"))
        for label, server in servers.items():
            for machine, spinners in (("idle", 0), ("2 busy processes", 2)):
                with busy(spinners):
                    times = rounds(server, known, Path(tmp), args.rounds)
                print(f"| {label} | {machine} | {len(times)} | {statistics.median(times):.0f} | {max(times):.0f} |",
                      flush=True)


if __name__ == "__main__":
    main()
