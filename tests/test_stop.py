"""Stopping a server with workers: a stop signal ends every process of the server within a second, and
starts nothing (no template, no worker) on its way out."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from facewire.process import ROOT, ServerProcess
from facewire.wire.keys import ClientKeys, make_keys
from facewire.wire.ping import answers_ping
from facewire.wire.transport import Secure, plain

from .peers import wait_until

ROUNDS = 3
"""Rounds per test: the order in which the server's processes act on the signal differs from run to run."""
WITHIN = 1.0
"""Seconds from the signal until no process of the server is left."""
STARTS = re.compile(r"template started|starting another|replacing it|worker \d+ (started|serving)")
"""What the log says when a template or a worker is started, or a worker begins to serve."""


class GroupServer(ServerProcess):
    """The server as the leader of a process group of its own, which a test can signal as a whole."""

    def _start(self, command: list[str], log_path: Path) -> None:
        self.log_path = Path(log_path)
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def group(self) -> list[int]:
        """The processes of its group that have not ended (a zombie has ended)."""
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                state, _, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
            except (OSError, ValueError):
                continue
            if int(group) == self.process.pid and state not in ("Z", "X"):
                found.append(int(stat.parent.name))
        return found


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("keys")
    make_keys(folder, ["alice"])
    return folder


def started(gallery: Path, log_path: Path, keys: Path | None) -> GroupServer:
    """A --workers 2 server that answers a ping, both its workers serving and the template's spare made."""
    extra = ["--keys", str(keys)] if keys else []
    secure: Secure = ClientKeys.load(keys / "alice.key_secret", keys / "server.key").secure if keys else plain
    server = GroupServer(gallery, log_path, "--workers", "2", *extra, wait=False)
    try:
        answered = wait_until(lambda: not server.alive() or answers_ping(server.address, 500, secure), 120)
        assert answered and server.alive(), server.log()
        assert wait_until(lambda: serving(server, 2) and len(server.spares()) == 1, 60), server.log()
    except BaseException:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()
        raise
    return server


def serving(server: GroupServer, count: int) -> bool:
    """Whether `count` workers run and each has logged that it serves."""
    workers, log = server.workers(), server.log()
    return len(workers) == count and all(f"worker {pid} serving" in log for pid in workers)


def stop(server: GroupServer, whole_group: bool, signum: int = signal.SIGTERM) -> tuple[float, int, str]:
    """Signal the server's group (or the server alone); seconds until no process of it is left, its exit
    status, and the log it wrote after the signal. SIGKILLs the group if it is not gone in 15 s."""
    mark = server.log_mark()
    signalled = time.monotonic()
    if whole_group:
        os.killpg(server.process.pid, signum)
    else:
        server.process.send_signal(signum)
    while server.process.poll() is None or server.group():
        if time.monotonic() - signalled > 15:
            os.killpg(server.process.pid, signal.SIGKILL)
            break
        time.sleep(0.01)
    took = time.monotonic() - signalled
    with open(server.log_path, "rb") as log:
        log.seek(mark)
        return took, server.process.wait(), log.read().decode(errors="replace")


def check_stopped(server: GroupServer, took: float, status: int, after: str) -> None:
    assert took < WITHIN, f"its processes took {took:.2f} s to end; the log after the signal:\n{after}"
    assert status == 0, after
    assert not [line for line in after.splitlines() if STARTS.search(line)], after
    assert f"supervisor[{server.process.pid}]: stopped" in after and "Traceback" not in after, after


@pytest.mark.parametrize("secured", [False, True], ids=["plain", "keys"])
def test_sigterm_to_the_process_group_ends_it_within_a_second_and_starts_nothing(repo_gallery, keys, tmp_path,
                                                                                  secured):
    """The template and the workers get the signal too: the template dies of it, and the supervisor
    must count it (and its workers) as gone instead of restarting it or waiting for its reports."""
    for round_ in range(ROUNDS):
        server = started(repo_gallery, tmp_path / f"server{round_}.log", keys if secured else None)
        check_stopped(server, *stop(server, whole_group=True))


def test_sigint_to_the_supervisor_alone_stops_its_workers_and_template_within_a_second(repo_gallery,
                                                                                       tmp_path):
    """`kill -INT PID` reaches the supervisor only: it stops its workers and its template itself."""
    server = started(repo_gallery, tmp_path / "server.log", None)
    check_stopped(server, *stop(server, whole_group=False, signum=signal.SIGINT))
