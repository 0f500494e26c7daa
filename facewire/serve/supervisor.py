"""The supervisor of a server with workers: the broker, the local worker pool and its watchdog (and the
HTTP gateway, with --http; see gateway.py).

Local workers are forked from a warm template (forkserver.py, `python -m facewire.serve.template`)
and do what a worker on another host does (`facewire-server --worker --connect ADDR`).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from typing import Sequence

import zmq

from facewire.config import Config
from facewire.serve.broker import Proxy
from facewire.serve.forkserver import Template, wait_gone
from facewire.serve.gateway import gateway_beside
from facewire.serve.startup import StopEvent, server_keys, stop_on_signals
from facewire.wire.ping import ping_reply
from facewire.wire.transport import is_public, plain

log = logging.getLogger(__name__)

SINGLE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""Each worker does one request at a time on one core, so N workers do not oversubscribe N cores."""

YOUNG_EXIT_SECONDS = 5.0
"""A worker that dies sooner than this after starting is restarted after a growing delay."""
MAX_RESTART_DELAY = 30.0


@dataclass
class _Slot:
    """One worker's place in the pool: its pid (None while none runs) and restart state."""

    pid: int | None = None
    asked: bool = False  # a fork was asked for and its pid is not known yet
    started: float = 0.0
    delay: float = 0.0
    not_before: float = 0.0


class WorkerPool:
    """N local workers forked from one warm template (see forkserver.py).

    `check` replaces any worker that died at once, or after a growing delay if it died
    young without ever serving; a template that dies is started again the same way.
    Once `stopping` is set (by the stop signal, or by `stop`), the pool starts nothing more.
    """

    def __init__(self, command: Sequence[str], count: int, stopping: threading.Event | None = None):
        self.command = list(command)
        self.env = {**os.environ, **{k: v for k, v in SINGLE_THREAD_ENV.items() if k not in os.environ}}
        self.slots = [_Slot() for _ in range(count)]
        self.template: Template | None = None
        self.spare = _Slot()  # the template's own restart state
        self.stopping = stopping if stopping is not None else threading.Event()
        self.check()

    def check(self, served: set[int] = frozenset()) -> None:
        """Read what became of the workers, and ask for a worker for every free slot whose back-off passed.

        Does nothing once the pool is stopping: a template or worker that dies then is not replaced."""
        if self.stopping.is_set():
            return
        now = time.monotonic()
        self._keep_template(now)
        if self.template is None:
            return
        for kind, pid, value in self.template.events():
            if kind == "forked":
                self.slots[value] = replace(self.slots[value], pid=pid, asked=False, started=now)
                log.info("worker %d started (pid %d)", value, pid)
            else:
                self._exited(pid, value, now, served)
        for index, slot in enumerate(self.slots):
            if slot.pid is None and not slot.asked and now >= slot.not_before:
                slot.asked = True
                self.template.fork(index)

    def _keep_template(self, now: float) -> None:
        if self.template is not None and self.template.alive():
            return
        if self.template is not None:
            _back_off(self.spare, now, served=False)
            log.warning("the worker template (pid %d) exited with %s; starting another%s", self.template.process.pid,
                        self.template.process.returncode, _later(self.spare))
            self.template = None
            self.slots = [_Slot(not_before=slot.not_before, delay=slot.delay) for slot in self.slots]  # its workers go too
        if now >= self.spare.not_before:
            self.template = Template(self.command, self.env)
            self.spare.started = now
            log.info("worker template started (pid %d)", self.template.process.pid)

    def _exited(self, pid: int, status: int, now: float, served: set[int]) -> None:
        for index, slot in enumerate(self.slots):
            if slot.pid == pid:
                _back_off(slot, now, pid in served)
                log.warning("worker %d (pid %d) exited with %s; replacing it%s", index, pid, status, _later(slot))
                slot.pid = None

    def pids(self) -> list[int]:
        return [slot.pid for slot in self.slots if slot.pid is not None]

    def kill(self, pid: int) -> None:
        """Kill a hung worker; the next `check` replaces it."""
        if pid in self.pids():
            os.kill(pid, signal.SIGKILL)

    def stop(self, grace: float = 10) -> None:
        """Start nothing more; stop every worker (SIGTERM, then SIGKILL after `grace` seconds), then the
        template.

        A worker or template that has ended already (the same signal may have reached the whole process
        group) counts as gone: a dead template reports no exits, so each worker is watched itself."""
        self.stopping.set()
        if self.template is None:
            return
        pids = set(self.pids())
        for kind, pid, _ in self.template.events():
            if kind == "forked":
                pids.add(pid)
            else:
                pids.discard(pid)
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        for pid in wait_gone(pids, time.monotonic() + grace):
            _signal(pid, signal.SIGKILL)
        self.template.stop(grace)


def _back_off(slot: _Slot, now: float, served: bool) -> None:
    """A process that died young without serving comes back after 1, 2, 4... s; any other at once."""
    young = now - slot.started < YOUNG_EXIT_SECONDS and not served
    slot.delay = min(MAX_RESTART_DELAY, max(1.0, 2 * slot.delay)) if young else 0.0
    slot.not_before = now + slot.delay


def _later(slot: _Slot) -> str:
    return f" in {slot.delay:.0f} s" if slot.delay else ""


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


class Watchdog:
    """Reads the workers' busy/idle reports and names those that hang.

    A worker is hung when busy for longer than `busy_limit` seconds (one request must not
    take that long), or when an idle worker sends no heartbeat for `silence_limit`.
    """

    def __init__(self, status: zmq.Socket, busy_limit: float, silence_limit: float = 5.0):
        self.status, self.busy_limit, self.silence_limit = status, busy_limit, silence_limit
        self.state: dict[int, tuple[bytes, float, float]] = {}  # pid -> (state, since, last heard)
        self.served: set[int] = set()  # every pid that ever reported: it started properly

    def read(self) -> None:
        now = time.monotonic()
        while self.status.poll(0):
            pid_text, state = self.status.recv_multipart()
            pid = int(pid_text)
            self.served.add(pid)
            previous = self.state.get(pid)
            since = previous[1] if previous and previous[0] == state else now
            self.state[pid] = (state, since, now)

    def hung(self, alive: list[int]) -> list[int]:
        """Workers among `alive` that have hung; forgets those no longer alive."""
        self.read()
        now = time.monotonic()
        self.state = {pid: value for pid, value in self.state.items() if pid in alive}
        found = []
        for pid, (state, since, heard) in self.state.items():
            if state == b"busy" and now - since > self.busy_limit:
                log.error("worker pid %d has been busy for %.0f s; killing it", pid, now - since)
                found.append(pid)
            elif state == b"idle" and now - heard > self.silence_limit:
                log.error("worker pid %d has been silent for %.0f s; killing it", pid, now - heard)
                found.append(pid)
        for pid in found:
            del self.state[pid]
        return found


def worker_command(config: Config) -> list[str]:
    """The command line of the template that forks local workers with `config`."""
    return [sys.executable, "-m", "facewire.serve.template", config.to_json()]


def run_supervisor(config: Config, started: float) -> None:
    """The broker on `config.bind` and `config.workers` local workers (and the HTTP gateway of `config.http`),
    kept alive until SIGINT or SIGTERM.

    `started`: when the server started (time.monotonic), for the "ready" line."""
    stop = stop_on_signals()
    context = zmq.Context()
    keys = server_keys(config)
    with keys.admitting(context), tempfile.TemporaryDirectory(prefix="facewire-") as private:
        backend = config.worker_bind or f"ipc://{private}/workers"
        if config.security.keys is None and is_public(backend):
            log.warning("!!! workers connect to %s with no CURVE: use --keys DIR", backend)
        try:
            proxy = Proxy(context, config.bind, backend, config.limits.max_frame_bytes, keys.secure,
                          keys.secure if backend.startswith("tcp://") else plain)
        except zmq.ZMQError as exc:
            raise SystemExit(f"cannot bind {config.bind} and {backend}: {exc}") from None
        frontend, backend = proxy.endpoints()
        proxy.start()
        status = context.socket(zmq.PULL)
        status.setsockopt(zmq.LINGER, 0)
        status.bind(f"ipc://{private}/status")
        watchdog = Watchdog(status, config.hang_timeout)
        pool = WorkerPool(worker_command(config.for_local_workers(backend, f"ipc://{private}/status")),
                          config.workers, stop)
        try:
            reply = None
            while config.workers and not stop.is_set() and reply is None:
                pool.check()
                reply = ping_reply(frontend, 500, keys.as_client().secure)
            gallery = f"{reply['people']} people, {reply['photos']} photos, " if reply else ""
            log.info("ready on %s: %sin %.2f s; %d local workers, workers connect to %s", frontend, gallery,
                     time.monotonic() - started, config.workers, backend)
            with gateway_beside(config, frontend):
                while not stop.is_set():
                    wait_for_news(status, pool, stop, 500)
                    for pid in watchdog.hung(pool.pids()):
                        pool.kill(pid)
                    pool.check(watchdog.served)
        finally:
            pool.stop()
            status.close()
            proxy.stop()
    context.term()
    log.info("stopped")


def wait_for_news(status: zmq.Socket, pool: WorkerPool, stop: StopEvent, timeout_ms: int) -> None:
    """Until a worker reports, the worker template has news (a worker ended), a stop signal comes, or the
    timeout."""
    poller = zmq.Poller()
    poller.register(status, zmq.POLLIN)
    poller.register(stop, zmq.POLLIN)
    if pool.template is not None:
        poller.register(pool.template.process.stdout, zmq.POLLIN)
    poller.poll(timeout_ms)
