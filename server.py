#!/usr/bin/env python3
"""facewire server: load known_faces/ and answer recognition requests over ZeroMQ.

With --workers N (default: one per core) N worker processes answer behind the one
address; --worker --connect ADDR runs one worker, here or on another host.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import zmq

from facewire.args import bounded, folder
from facewire.broker import Proxy, Watchdog, WorkerPool
from facewire.forkserver import in_child, serve_forks
from facewire.gallery import LoadStats
from facewire.store import GalleryStore
from facewire.keys import ClientKeys, KeysError, ServerKeys
from facewire.matching import METHODS
from facewire.process import ping_reply
from facewire.protocol import DEFAULT_MAX_PIXELS, Limits
from facewire.recognize import DetectorSettings, load_models
from facewire.server import bind_rep, connect_rep, dlib_description, is_public, serve
from facewire.service import Service
from facewire.track import Tracker, server_secret

log = logging.getLogger("facewire")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--known-faces", type=folder, default="known_faces",
                        help="gallery folder: NAME.jpg files and/or NAME/ folders of photos (default: %(default)s)")
    parser.add_argument("--bind", default="tcp://127.0.0.1:5555", help="ZeroMQ address to bind (default: %(default)s)")
    parser.add_argument("--workers", type=bounded(int, 0), default=os.cpu_count() or 1, metavar="N",
                        help="worker processes behind --bind; 1 answers in this process (default: %(default)s, the cores)")
    parser.add_argument("--worker-bind", metavar="ADDR",
                        help="address workers connect to; give a tcp:// one to add workers on other hosts "
                             "(default: a private ipc:// socket)")
    parser.add_argument("--worker", action="store_true", help="run as one worker of a server (needs --connect)")
    parser.add_argument("--connect", metavar="ADDR", help="with --worker: the server's --worker-bind address")
    parser.add_argument("--keys", type=Path, metavar="DIR",
                        help="serve with CURVE: DIR/server.key_secret, admitting DIR/authorized/*.key "
                             "(make them with: python -m facewire.keys DIR --client NAME)")
    parser.add_argument("--key", type=Path, metavar="FILE",
                        help="with --worker: this worker's .key_secret, when the server uses --keys")
    parser.add_argument("--server-key", type=Path, metavar="FILE",
                        help="with --worker: the server's public server.key, when the server uses --keys")
    parser.add_argument("--hang-timeout", type=bounded(float, 0, above=True), default=60.0, metavar="S",
                        help="kill and replace a local worker busy on one request for longer (default: %(default)s)")
    parser.add_argument("--status", metavar="ADDR", help=argparse.SUPPRESS)  # a local worker reports here
    parser.add_argument("--template", action="store_true", help=argparse.SUPPRESS)  # forks local workers
    parser.add_argument("--tolerance", type=bounded(float, 0, 2), default=0.6,
                        help="largest face distance still given a name; lower is stricter (default: %(default)s)")
    parser.add_argument("--match", choices=METHODS, default="nearest",
                        help="nearest: the nearest photo names the face; knn: the k nearest photos vote (default: %(default)s)")
    parser.add_argument("--k", type=bounded(int, 1), default=None, help="with --match knn: photos that vote (default: sqrt of the photos)")
    parser.add_argument("--model", choices=("hog", "cnn"), default="hog", help="face detector (default: %(default)s)")
    parser.add_argument("--upsample", type=bounded(int, 0), default=None, metavar="N",
                        help="run dlib's N-fold upsampling on the full image instead of automatic scaling")
    parser.add_argument("--min-face", type=int, default=DetectorSettings.min_face, metavar="PX",
                        help="automatic scaling finds faces down to this size (default: %(default)s)")
    parser.add_argument("--min-face-fraction", type=bounded(float, 0, 1), default=1 / 16, metavar="F",
                        help="...but in large images, not below this fraction of the short side (default: 1/16)")
    parser.add_argument("--max-megapixels", type=bounded(float, 0, above=True), default=DEFAULT_MAX_PIXELS / 1e6,
                        help="refuse larger images (default: %(default)g)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="encoding cache file (default: KNOWN_FACES/.facewire-cache.npz)")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    args = parser.parse_args()
    if args.worker and not args.connect:
        parser.error("--worker needs --connect ADDR")
    if bool(args.key) != bool(args.server_key):
        parser.error("--key and --server-key go together")
    if not args.worker and (args.connect is not None or args.key is not None):
        parser.error("--connect, --key and --server-key go with --worker")
    if args.worker and (args.keys is not None or args.worker_bind is not None):
        parser.error("--keys and --worker-bind do nothing with --worker (a worker takes --key and --server-key)")
    if args.worker_bind is not None and args.workers == 1:
        parser.error("--worker-bind does nothing with --workers 1 (one process, no workers)")
    if args.k is not None and args.match != "knn":
        parser.error("--k goes with --match knn")
    if args.min_face < 1:  # checked here, so that its declaration stays as it is
        parser.error(f"argument --min-face: {args.min_face} is not 1 or more")
    return args


def worker_command(args: argparse.Namespace, backend: str, status: str) -> list[str]:
    """The command line of local workers: this script, same settings, connected to `backend`
    (the worker pool runs it with --template, and forks the workers from that)."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", "--connect", backend, "--status", status,
               "--known-faces", str(args.known_faces), "--tolerance", str(args.tolerance),
               "--model", args.model, "--min-face", str(args.min_face), "--match", args.match,
               "--min-face-fraction", str(args.min_face_fraction),
               "--max-megapixels", str(args.max_megapixels), "--log-level", args.log_level]
    if args.upsample is not None:
        command += ["--upsample", str(args.upsample)]
    if args.k is not None:
        command += ["--k", str(args.k)]
    if args.keys and backend.startswith("tcp://"):
        command += ["--key", str(args.keys / "server.key_secret"), "--server-key", str(args.keys / "server.key")]
    if args.cache is not None:
        command += ["--cache", str(args.cache)]
    return command


def open_store(args: argparse.Namespace, settings: DetectorSettings) -> GalleryStore:
    """The gallery, loaded (encoding what the cache lacks) and kept in step with the disk."""
    store = GalleryStore(args.known_faces, settings, args.cache)
    stats = store.stats
    log.info(
        "gallery %s: %d photos, %d encoded, %d from cache, %d skipped",
        args.known_faces, stats.photos, stats.encoded, stats.from_cache, len(stats.skipped),
    )
    return store


def stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


@contextmanager
def server_keys(args: argparse.Namespace, context: zmq.Context) -> Iterator[ServerKeys | None]:
    """The keys, with the authenticator running in `context` until the block ends (or a warning
    if there is no CURVE). The authenticator stops first, so that the context can end."""
    if args.keys is None:
        if is_public(args.bind):
            log.warning("!!! %s is reachable from other hosts and has no CURVE: anyone there can query "
                        "the gallery and read images on the wire. Use --keys DIR (see README, Security).",
                        args.bind)
        yield None
        return
    try:
        keys = ServerKeys.load(args.keys)
    except KeysError as exc:
        raise SystemExit(str(exc)) from None
    authenticator = keys.authenticator(context)
    log.info("CURVE on: admitting the keys in %s", keys.authorized)
    try:
        yield keys
    finally:
        authenticator.stop()


def run_single(args: argparse.Namespace, service: Service, stats: LoadStats) -> None:
    """One process: a REP socket answers every request itself."""
    stop = stop_on_signals()
    context = zmq.Context()
    with server_keys(args, context) as keys:
        try:
            socket = bind_rep(context, args.bind, service.limits, keys.secure if keys else None)
        except zmq.ZMQError as exc:
            raise SystemExit(f"cannot bind {args.bind}: {exc}") from None
        gallery = service.store.gallery
        log.info(
            "ready on %s: %d people, %d photos, loaded in %.2f s",
            socket.getsockopt_string(zmq.LAST_ENDPOINT), len(gallery.people), len(gallery.names), stats.seconds,
        )
        serve(service, socket, stop)
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


def run_worker(args: argparse.Namespace, service: Service, parent: int | None = None) -> None:
    """One worker: a REP socket connected to a server's worker address.

    A local worker (forked by the template `parent`) also reports to its broker, and stops
    when the template is gone."""
    stop = stop_on_signals()
    context = zmq.Context()
    try:
        keys = ClientKeys.load(args.key, args.server_key) if args.key else None
    except KeysError as exc:
        raise SystemExit(str(exc)) from None
    socket = connect_rep(context, args.connect, service.limits, keys.secure if keys else None)
    status = None
    if parent is not None:
        exit_with_parent(stop, parent)
        status = context.socket(zmq.PUSH)
        status.setsockopt(zmq.LINGER, 0)
        status.setsockopt(zmq.SNDHWM, 10)
        status.connect(args.status)
    log.info("worker %d serving %s", os.getpid(), args.connect)
    serve(service, socket, stop, status)
    if status is not None:
        status.close()
    context.term()


def run_broker(args: argparse.Namespace, limits: Limits) -> None:
    """The proxy between clients and workers, and the local workers' supervisor."""
    started = time.monotonic()
    stop = stop_on_signals()
    context = zmq.Context()
    with server_keys(args, context) as keys, tempfile.TemporaryDirectory(prefix="facewire-") as private:
        backend = args.worker_bind or f"ipc://{private}/workers"
        if not keys and is_public(backend):
            log.warning("!!! workers connect to %s with no CURVE: use --keys DIR", backend)
        secure_backend = keys.secure if keys and backend.startswith("tcp://") else None
        try:
            proxy = Proxy(context, args.bind, backend, limits, keys.secure if keys else None, secure_backend)
        except zmq.ZMQError as exc:
            raise SystemExit(f"cannot bind {args.bind} and {backend}: {exc}") from None
        frontend, backend = proxy.endpoints()
        proxy.start()
        status = context.socket(zmq.PULL)
        status.setsockopt(zmq.LINGER, 0)
        status.bind(f"ipc://{private}/status")
        watchdog = Watchdog(status, args.hang_timeout)
        pool = WorkerPool(worker_command(args, backend, f"ipc://{private}/status"), args.workers)
        try:
            ping_secure = keys.as_client().secure if keys else None
            reply = None
            while args.workers and not stop.is_set() and reply is None:
                pool.check()
                reply = ping_reply(frontend, 500, ping_secure)
            gallery = f"{reply['people']} people, {reply['photos']} photos, " if reply else ""
            log.info("ready on %s: %sin %.2f s; %d local workers, workers connect to %s", frontend, gallery,
                     time.monotonic() - started, args.workers, backend)
            while not stop.is_set():
                wait_for_news(status, pool, 500)
                for pid in watchdog.hung(pool.pids()):
                    pool.kill(pid)
                pool.check(watchdog.served)
        finally:
            pool.stop()
            status.close()
            proxy.stop()
    context.term()
    log.info("stopped")


def wait_for_news(status: zmq.Socket, pool: WorkerPool, timeout_ms: int) -> None:
    """Until a worker reports, the worker template has news (a worker ended), or the timeout."""
    poller = zmq.Poller()
    poller.register(status, zmq.POLLIN)
    if pool.template is not None:
        poller.register(pool.template.process.stdout, zmq.POLLIN)
    poller.poll(timeout_ms)


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    settings = DetectorSettings(args.model, args.upsample, args.min_face, args.min_face_fraction)
    limits = Limits(int(args.max_megapixels * 1e6))
    try:  # made once here; local workers inherit it in their environment (not in ps)
        tracker = Tracker(server_secret())
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    if not args.worker:
        log.info("running %s", dlib_description())
    if not args.worker and args.workers != 1:
        run_broker(args, limits)
        return
    load_models(settings)
    if args.template:  # computes nothing itself (see forkserver.py): the gallery is encoded in a child
        in_child(lambda: open_store(args, settings))
        template = os.getpid()
        serve_forks(lambda: run_worker(args, Service(open_store(args, settings), settings, args.tolerance, limits,
                                                     args.match, args.k, tracker), parent=template))
        return
    store = open_store(args, settings)
    service = Service(store, settings, args.tolerance, limits, args.match, args.k, tracker)
    if args.worker:
        run_worker(args, service)
    else:
        run_single(args, service, store.stats)


if __name__ == "__main__":
    main()
