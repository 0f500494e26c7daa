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
from typing import Sequence

import zmq

from .protocol import Limits

log = logging.getLogger(__name__)

SINGLE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""Each worker does one request at a time on one core, so N workers do not oversubscribe N cores."""

CONTROL_ADDRESS = "inproc://facewire-proxy-control"


class WorkerPool:
    """N local worker subprocesses; `check` replaces any that died."""

    def __init__(self, command: Sequence[str], count: int):
        self.command = list(command)
        self.env = {**os.environ, **{k: v for k, v in SINGLE_THREAD_ENV.items() if k not in os.environ}}
        self.processes: list[subprocess.Popen] = [self._spawn(i) for i in range(count)]

    def _spawn(self, index: int) -> subprocess.Popen:
        process = subprocess.Popen(self.command, env=self.env)
        log.info("worker %d started (pid %d)", index, process.pid)
        return process

    def check(self) -> None:
        for index, process in enumerate(self.processes):
            if process.poll() is not None:
                log.warning("worker %d (pid %d) exited with %s; replacing it", index, process.pid, process.returncode)
                self.processes[index] = self._spawn(index)

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def stop(self, grace: float = 10) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Proxy:
    """pyzmq's steerable proxy between a bound ROUTER and a bound DEALER, in a thread."""

    def __init__(self, context: zmq.Context, frontend: str, backend: str, limits: Limits):
        self.context = context
        self.frontend = context.socket(zmq.ROUTER)
        self.backend = context.socket(zmq.DEALER)
        for socket in (self.frontend, self.backend):
            socket.setsockopt(zmq.LINGER, 0)
            socket.setsockopt(zmq.MAXMSGSIZE, limits.max_frame_bytes)
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
