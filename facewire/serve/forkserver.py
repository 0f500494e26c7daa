"""Workers forked from a warm template, so that a dead worker is replaced in milliseconds.

The supervisor starts one template process (`python -m facewire.serve.template CONFIG`). It
imports dlib and loads the models, and computes nothing: dlib and OpenCV start thread
pools the first time they detect or resize, and a process with threads must not fork
(a child's copy of a pool has no threads, and waits for them forever). Work that needs
them before the first fork (encoding a cold gallery) runs in a child of its own
(`in_child`). The template creates no ZeroMQ context either. It forks a worker for each
"fork" line the supervisor writes to its stdin, and tells the supervisor on its stdout:

    forked PID            a worker was forked (in the order the forks were asked for)
    exited PID STATUS     a worker ended (STATUS as subprocess.Popen.returncode has it)

The worker creates its ZeroMQ context after the fork, connects and serves. When the supervisor
goes, the template sees its stdin close and ends; its workers then see their parent gone.

Making a worker's ONNX Runtime session takes a tenth of a second, so the template keeps one
spare child (named SPARE_NAME in /proc) that has made it already and waits: the next "fork"
releases the spare, which connects at once, and a new spare is prepared behind it. A spare
that dies unreleased is not reported; one left when the template ends exits quietly.
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Callable, Sequence

log = logging.getLogger(__name__)

SPARE_NAME = b"facewire-spare"
WORKER_NAME = b"facewire-worker"
"""Names in /proc/PID/comm (at most 15 bytes) of the spare, and of a worker it became."""
PR_SET_NAME = 15


def in_child(work: Callable[[], None]) -> int:
    """Run `work` in a forked child and wait for it: its exit status."""
    pid = os.fork()
    if pid == 0:
        _run_child(work)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def serve_forks(prepare: Callable[[], None], serve: Callable[[], None]) -> None:
    """The template's loop: start a worker for each "fork" line on stdin, report, end at EOF.

    Each worker runs `prepare` (what cannot be shared across a fork) and then `serve`, and
    exits; the spare runs `prepare` ahead of need. A child's exit wakes the loop at once (SIGCHLD).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which stops the workers
    wake, woken = os.pipe()
    for fd in (wake, woken):
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(woken)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: set[int] = set()
    spare: Spare | None = None
    pending = b""

    def in_worker(go: tuple[int, int] | None = None) -> None:
        """A forked child: leave the template's pipes, prepare, (as the spare) wait to be let go, serve."""
        signal.set_wakeup_fd(-1)
        for fd in (wake, woken, *([spare.go] if spare else []), *(go[1:] if go else [])):
            os.close(fd)
        _set_name(SPARE_NAME if go else WORKER_NAME)
        prepare()
        if go:
            if not os.read(go[0], 1):
                os._exit(0)  # the template ended before it needed this spare
            _set_name(WORKER_NAME)
        serve()

    while True:
        readable, _, _ = select.select([sys.stdin.fileno(), wake], [], [])
        if wake in readable:
            os.read(wake, 4096)
            if _report_exits(children, spare.pid if spare else None):
                spare = None  # it died unreleased: the next worker is forked afresh
        if sys.stdin.fileno() not in readable:
            continue
        chunk = os.read(sys.stdin.fileno(), 4096)
        if not chunk:
            return
        pending += chunk
        asked = 0
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip() != b"fork":
                continue
            asked += 1
            if spare:
                pid, spare = spare.release(), None
            else:
                pid = _fork(in_worker)
            children.add(pid)
            _say(f"forked {pid}")
        if asked and spare is None:
            spare = Spare(in_worker)


class Spare:
    """The template's handle on its spare: a child that has prepared a worker and waits to serve."""

    def __init__(self, in_worker: Callable[[tuple[int, int]], None]):
        wait, self.go = os.pipe()
        self.pid = _fork(lambda: in_worker((wait, self.go)))
        os.close(wait)

    def release(self) -> int:
        """Let it serve; its pid."""
        os.write(self.go, b"g")
        os.close(self.go)
        return self.pid


def _fork(work: Callable[[], None]) -> int:
    pid = os.fork()
    if pid == 0:
        _run_child(work)
    return pid


def _set_name(name: bytes) -> None:
    """This process's name in /proc/PID/comm (what ps and top show), via prctl(PR_SET_NAME)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NAME, ctypes.c_char_p(name), 0, 0, 0)


def _report_exits(children: set[int], spare: int | None) -> bool:
    """Reap every child that ended and report the workers among them; True if `spare` ended."""
    spare_ended = False
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return spare_ended
        if pid == 0:
            return spare_ended
        if pid == spare:
            spare_ended = True
            log.warning("the spare worker %d ended unreleased (%s)", pid, os.waitstatus_to_exitcode(status))
        elif pid in children:
            children.discard(pid)
            _say(f"exited {pid} {os.waitstatus_to_exitcode(status)}")


def _say(line: str) -> None:
    os.write(sys.stdout.fileno(), f"{line}\n".encode())


def _run_child(start_worker: Callable[[], None]) -> None:
    """In a forked worker: leave the supervisor's pipe alone, serve, and exit without returning."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, sys.stdin.fileno())
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    code = 0
    try:
        start_worker()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - a worker's crash is logged, and its exit status says so
        log.exception("worker failed")
        code = 1
    finally:
        logging.shutdown()
    os._exit(code)


class Template:
    """The supervisor's handle on a template process: ask for forks, read what became of them."""

    def __init__(self, command: Sequence[str], env: dict[str, str]):
        self.process = subprocess.Popen(list(command), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        env=env)
        os.set_blocking(self.process.stdout.fileno(), False)
        self.asked: deque[int] = deque()  # slot indexes waiting for their "forked" line, in order
        self.buffer = b""

    def alive(self) -> bool:
        return self.process.poll() is None

    def fork(self, slot: int) -> None:
        """Ask for a worker for `slot`; `events` gives its pid once it exists."""
        self.asked.append(slot)
        try:
            self.process.stdin.write(b"fork\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # the template died: the pool notices and starts another

    def events(self) -> list[tuple[str, int, int]]:
        """("forked", pid, slot) and ("exited", pid, status) since the last call."""
        try:
            self.buffer += self.process.stdout.read() or b""
        except (BlockingIOError, ValueError):
            pass
        *lines, self.buffer = self.buffer.split(b"\n")
        found = []
        for line in lines:
            word, *numbers = line.decode().split()
            if word == "forked":
                found.append(("forked", int(numbers[0]), self.asked.popleft()))
            elif word == "exited":
                found.append(("exited", int(numbers[0]), int(numbers[1])))
        return found

    def stop(self, grace: float) -> None:
        """Close its stdin (it then ends) and wait; kill it after `grace` seconds."""
        try:
            self.process.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def wait_gone(pids: set[int], deadline: float) -> set[int]:
    """Wait until no pid in `pids` runs or `deadline` passes; those still running."""
    left = set(pids)
    while True:
        left = {pid for pid in left if running(pid)}
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.02)


def running(pid: int) -> bool:
    """Whether process `pid` exists and has not ended (a zombie has ended: it only waits to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
