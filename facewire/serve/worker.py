"""A worker: a REP socket answered by `Service.handle`, one request at a time.

Three ways to run one: the whole server in one process (`run_single`, --workers 1) and a worker
connected to a broker, here or on another host (`run_worker`, --worker --connect ADDR), both
started by `run_here`; and the local workers of a supervisor, forked from a warm template
(`run_template`, started as `python -m facewire.serve.template CONFIG_JSON`; see forkserver.py).
"""

from __future__ import annotations

import logging
import os
import threading
import time

import zmq

from facewire.config import Config
from facewire.faces.decision import projection_lines
from facewire.faces.encoding import dlib_description, encoder_description
from facewire.faces.enrolment import enrolment_problem, photo_problem
from facewire.faces.recognize import load_models
from facewire.serve.broker import sender_of
from facewire.serve.forkserver import in_child, serve_forks
from facewire.serve.gateway import gateway_beside
from facewire.serve.service import Service
from facewire.serve.startup import StopEvent, server_keys, stop_on_signals, tracker
from facewire.serve.track import Tracker
from facewire.store.backends import DatabaseError, redact
from facewire.store.database import open_database
from facewire.store.live import GalleryStore, PhotoChecks, prepare
from facewire.wire.keys import KeysError, Sender, load_client_keys
from facewire.wire.transport import open_socket

log = logging.getLogger(__name__)

POLL_MS = 200
HEARTBEAT_SECONDS = 1.0


def serve(service: Service, socket: zmq.Socket, stop: threading.Event, status: zmq.Socket | None = None,
          brokered: bool = False) -> None:
    """Answer requests on a REP socket until `stop` is set; closes the socket.

    `brokered`: requests come through a broker, each after its sender's stamp (broker.py);
    otherwise the sender is the name the ZAP handler gave the client's connection.
    With a `status` socket (a worker under a local supervisor) it reports b"busy" on taking a
    request, b"idle" when done, and b"idle" each second while waiting: the supervisor's
    watchdog kills a worker that stays busy too long or falls silent. A `StopEvent` ends the wait for
    a request the moment its signal arrives; any other event, at the next poll timeout.
    """
    poller = zmq.Poller()
    poller.register(socket, zmq.POLLIN)
    if isinstance(stop, StopEvent):
        poller.register(stop, zmq.POLLIN)
    last_beat = 0.0
    try:
        while not stop.is_set():
            if status is not None and time.monotonic() - last_beat >= HEARTBEAT_SECONDS:
                _report(status, b"idle")
                last_beat = time.monotonic()
            if socket not in dict(poller.poll(POLL_MS)):
                continue
            frames = socket.recv_multipart(copy=False)
            if status is not None:
                _report(status, b"busy")
            if brokered:
                sender, frames = Sender.from_stamp(frames[0].buffer), frames[1:]
            else:
                sender = sender_of(frames[0])
            socket.send_multipart(service.handle([frame.buffer for frame in frames], sender), copy=False)
            last_beat = 0.0
    finally:
        socket.close()
        log.info("stopped")


def _report(status: zmq.Socket, state: bytes) -> None:
    try:
        status.send_multipart([str(os.getpid()).encode(), state], flags=zmq.NOBLOCK)
    except zmq.Again:
        pass  # the supervisor is gone or slow: serving matters more than reporting


def photo_checks(config: Config) -> PhotoChecks | None:
    """How the gallery judges new photos: facewire.faces.enrolment's checks, or none with --allow-poor-photos."""
    return None if config.allow_poor_photos else PhotoChecks(photo_problem, enrolment_problem)


def prepare_gallery(config: Config) -> None:
    """Sync the folder into the gallery database, re-encode what the encoder lacks, save the index of a big gallery."""
    try:
        stats = prepare(config.gallery_db(), config.gallery_folder(), config.detector, photo_checks(config))
    except DatabaseError as exc:
        raise SystemExit(f"cannot use the gallery database: {exc}") from None
    synced = stats.sync
    log.info("gallery %s%s: %s%d photos re-encoded, %s, in %.2f s", redact(config.gallery_db()),
             f" and folder {config.known_faces}" if synced else "",
             f"{synced.seen} files ({synced.unchanged} unchanged, {synced.added} added, {synced.removed} removed, "
             f"{synced.skipped} skipped, {synced.refused} refused), " if synced else "", stats.reencoded,
             "index saved" if stats.saved_index is not None else "no index saved", stats.seconds)
    if synced and synced.refused:
        log.warning("%d gallery photos refused as too poor (named above); --allow-poor-photos takes them",
                    synced.refused)
    log_false_names(config)


def log_false_names(config: Config) -> None:
    """How often strangers would get a name under the server's rule, projected for its gallery and larger ones
    by the built-in impostor model (decision.py)."""
    with open_database(config.gallery_db()) as db:
        people = db.people_count()
    for line in projection_lines(config.matching, people):
        log.info("%s", line)


def open_store(config: Config) -> GalleryStore:
    """The gallery database as this worker sees it, its index loaded and kept in step with every change."""
    started = time.perf_counter()
    try:
        store = GalleryStore.open(config.gallery_db(), config.gallery_folder(), config.detector, photo_checks(config))
    except DatabaseError as exc:
        raise SystemExit(str(exc)) from None
    log.info("gallery loaded: %d faces at seq %d (%s), in %.2f s", len(store.index), store.seq,
             "exact" if store.index.exact else "indexed", time.perf_counter() - started)
    return store


def run_here(config: Config, signer: Tracker, started: float) -> None:
    """The whole server in this process (--workers 1), or one worker of a broker (--worker --connect ADDR).

    Either prepares the gallery first, as a supervisor's template does: a worker with a folder serves only
    once that folder is in the database (if the server is syncing it, the lock makes the worker wait).
    `started`: when the server started (time.monotonic), for the "ready" line."""
    load_models(config.detector)
    log.info("running %s, encoding with %s", dlib_description(), encoder_description(config.detector))
    prepare_gallery(config)
    if config.connect is None:
        run_single(config, build_service(config, signer), started)
    else:
        run_worker(config, build_service(config, signer))


def build_service(config: Config, signer: Tracker) -> Service:
    return Service(open_store(config), config.matching, config.limits, signer, read_only=config.read_only)


def run_single(config: Config, service: Service, started: float) -> None:
    """The whole server in one process: a bound REP socket answers every request itself (and an HTTP
    gateway beside it, with --http).

    `started`: when the server started (time.monotonic), for the "ready" line."""
    stop = stop_on_signals()
    context = zmq.Context()
    keys = server_keys(config)
    with keys.admitting(context):
        try:
            socket = open_socket(context, zmq.REP, config.bind, bind=True, secure=keys.secure,
                                 max_bytes=config.limits.max_frame_bytes, serving=True)
        except zmq.ZMQError as exc:
            raise SystemExit(f"cannot bind {config.bind}: {exc}") from None
        (people, photos), endpoint = service.store.counts(), socket.getsockopt_string(zmq.LAST_ENDPOINT)
        log.info("ready on %s: %d people, %d photos, in %.2f s", endpoint, people, photos, time.monotonic() - started)
        with gateway_beside(config, endpoint):
            serve(service, socket, stop)
    context.term()


def run_worker(config: Config, service: Service, parent: int | None = None) -> None:
    """One worker: a REP socket connected to a broker's worker address (`config.connect`).

    A local worker (forked by the template `parent`) also reports to its supervisor
    (`config.status`), and stops when the template is gone."""
    stop = stop_on_signals()
    context = zmq.Context()
    try:
        keys = load_client_keys(config.security.key, config.security.server_key)
    except KeysError as exc:
        raise SystemExit(str(exc)) from None
    socket = open_socket(context, zmq.REP, config.connect, secure=keys.secure,
                         max_bytes=config.limits.max_frame_bytes, serving=True)
    status = None
    if parent is not None:
        exit_with_parent(stop, parent)
        status = context.socket(zmq.PUSH)
        status.setsockopt(zmq.LINGER, 0)
        status.setsockopt(zmq.SNDHWM, 10)
        status.connect(config.status)
    log.info("worker %d serving %s, encoding with %s", os.getpid(), config.connect,
             encoder_description(config.detector))
    serve(service, socket, stop, status, brokered=True)
    if status is not None:
        status.close()
    context.term()


def exit_with_parent(stop: threading.Event, parent: int) -> None:
    """Set `stop` once the process that started this worker is gone (say, killed with -9)."""
    def watch() -> None:
        while True:
            if os.getppid() != parent:
                log.warning("the server that started this worker is gone; stopping")
                stop.set()
                return
            if stop.wait(1.0):
                return

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def run_template(config: Config) -> None:
    """Load the models, prepare the gallery database in a child, then fork a worker whenever asked.

    The template itself computes nothing (see forkserver.py), and each worker opens its own
    store, ONNX Runtime session and ZeroMQ context after the fork."""
    signer = tracker()
    load_models(config.detector, fork_safe=True)
    log.info("running %s", dlib_description())
    if in_child(lambda: prepare_gallery(config)) != 0:
        raise SystemExit("the gallery database could not be prepared (see above)")
    template = os.getpid()

    serve_forks(prepare=lambda: load_models(config.detector),  # what cannot be shared: the ONNX Runtime session
                serve=lambda: run_worker(config, build_service(config, signer), parent=template))
