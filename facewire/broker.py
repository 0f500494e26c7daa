"""Many workers behind one address: pyzmq's ROUTER/DEALER proxy, and the local worker processes.

Clients talk to the ROUTER (frontend); workers are REP sockets that connect to the
DEALER (backend), on this host or any other. Local workers are plain subprocesses
running `server.py --worker --connect BACKEND`, the same command a remote host runs.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Sequence

import zmq

from .protocol import Limits
from .server import Secure

log = logging.getLogger(__name__)

SINGLE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""Each worker does one request at a time on one core, so N workers do not oversubscribe N cores."""

CONTROL_ADDRESS = "inproc://facewire-proxy-control"
YOUNG_EXIT_SECONDS = 5.0
"""A worker that dies sooner than this after starting is restarted after a growing delay."""
MAX_RESTART_DELAY = 30.0


@dataclass
class _Slot:
    """One worker's place in the pool: its process (None while backing off) and restart state."""

    process: subprocess.Popen | None = None
    started: float = 0.0
    delay: float = 0.0
    not_before: float = 0.0


class WorkerPool:
    """N local worker subprocesses; `check` replaces any that died, backing off if they die young."""

    def __init__(self, command: Sequence[str], count: int):
        self.command = list(command)
        self.env = {**os.environ, **{k: v for k, v in SINGLE_THREAD_ENV.items() if k not in os.environ}}
        self.slots = [_Slot() for _ in range(count)]
        self.check()

    def check(self) -> None:
        """Notice dead workers and (re)start every worker whose back-off has passed."""
        now = time.monotonic()
        for index, slot in enumerate(self.slots):
            if slot.process is not None:
                if slot.process.poll() is None:
                    continue
                young = now - slot.started < YOUNG_EXIT_SECONDS
                slot.delay = min(MAX_RESTART_DELAY, max(1.0, 2 * slot.delay)) if young else 0.0
                slot.not_before = now + slot.delay
                log.warning("worker %d (pid %d) exited with %s; replacing it%s", index, slot.process.pid,
                            slot.process.returncode, f" in {slot.delay:.0f} s" if slot.delay else "")
                slot.process = None
            if now >= slot.not_before:
                slot.process = subprocess.Popen(self.command, env=self.env)
                slot.started = now
                log.info("worker %d started (pid %d)", index, slot.process.pid)

    def pids(self) -> list[int]:
        return [slot.process.pid for slot in self.slots if slot.process is not None]

    def stop(self, grace: float = 10) -> None:
        processes = [slot.process for slot in self.slots if slot.process is not None]
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Proxy:
    """pyzmq's steerable proxy between a bound ROUTER and a bound DEALER, in a thread."""

    def __init__(self, context: zmq.Context, frontend: str, backend: str, limits: Limits,
                 secure_frontend: Secure | None = None, secure_backend: Secure | None = None):
        self.context = context
        self.frontend = context.socket(zmq.ROUTER)
        self.backend = context.socket(zmq.DEALER)
        for socket, secure in ((self.frontend, secure_frontend), (self.backend, secure_backend)):
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.MAXMSGSIZE, limits.max_frame_bytes)
            if secure:
                secure(socket)
        self.frontend.bind(frontend)
        self.backend.bind(backend)
        self.control = context.socket(zmq.PAIR)
        self.control.bind(CONTROL_ADDRESS)
        self.thread = threading.Thread(target=self._run, name="proxy", daemon=True)

    def endpoints(self) -> tuple[str, str]:
        return (self.frontend.getsockopt_string(zmq.LAST_ENDPOINT),
                self.backend.getsockopt_string(zmq.LAST_ENDPOINT))

    def _run(self) -> None:
        try:
            zmq.proxy_steerable(self.frontend, self.backend, None, self.control)
        except zmq.ContextTerminated:
            pass

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Tell the proxy to end, wait for it, and close its sockets."""
        with self.context.socket(zmq.PAIR) as steer:
            steer.connect(CONTROL_ADDRESS)
            steer.send(b"TERMINATE")
            self.thread.join(timeout=5)
        for socket in (self.frontend, self.backend, self.control):
            socket.close(linger=0)
