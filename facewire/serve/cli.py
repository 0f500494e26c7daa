"""facewire server: load known_faces/ and answer recognition requests over ZeroMQ.

With --workers N (default: one per core) N worker processes answer behind the one
address; --worker --connect ADDR runs one worker, here or on another host.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from facewire.args import (
    add_decision_options,
    bounded,
    host_port,
    is_loopback,
    join_host_port,
    match_settings,
    token_file,
)
from facewire.config import DEFAULT_BIND, Config, Gateway, Security
from facewire.faces.settings import DETECTORS, ENCODERS, METHODS, DetectorSettings
from facewire.serve.startup import check_gallery_db, configure_logging, tracker
from facewire.serve.supervisor import run_supervisor
from facewire.wire.limits import DEFAULT_MAX_PIXELS, Limits


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--known-faces", type=Path, default=Path("known_faces"),
                        help="gallery folder: NAME.jpg files and/or NAME/ folders of photos (default: %(default)s)")
    parser.add_argument("--bind", default=DEFAULT_BIND, help="ZeroMQ address to bind (default: %(default)s)")
    parser.add_argument("--workers", type=bounded(int, 0), default=os.cpu_count() or 1, metavar="N",
                        help="worker processes behind --bind; 1 answers in this process (default: %(default)s, the cores)")
    parser.add_argument("--worker-bind", metavar="ADDR",
                        help="address workers connect to; give a tcp:// one to add workers on other hosts "
                             "(default: a private ipc:// socket)")
    parser.add_argument("--worker", action="store_true", help="run as one worker of a server (needs --connect)")
    parser.add_argument("--connect", metavar="ADDR", help="with --worker: the server's --worker-bind address")
    parser.add_argument("--keys", type=Path, metavar="DIR",
                        help="serve with CURVE: DIR/server.key_secret, admitting DIR/authorized/*.key to recognise "
                             "and DIR/editors/*.key to also enrol, remove and reload "
                             "(make them with: python -m facewire.wire.keys DIR --client NAME --editor NAME)")
    parser.add_argument("--read-only", action="store_true", help="refuse every change to the gallery (enrol, "
                        "remove, reload) with a 'forbidden' error")
    parser.add_argument("--allow-poor-photos", action="store_true",
                        help="enrol and sync photos whose face is too small, blurred, turned or tilted, or nearer "
                             "another person's photos than its own (refused by default, naming the reason)")
    parser.add_argument("--key", type=Path, metavar="FILE",
                        help="with --worker: this worker's .key_secret, when the server uses --keys")
    parser.add_argument("--server-key", type=Path, metavar="FILE",
                        help="with --worker: the server's public server.key, when the server uses --keys")
    parser.add_argument("--hang-timeout", type=bounded(float, 0, above=True), default=60.0, metavar="S",
                        help="kill and replace a local worker busy on one request for longer (default: %(default)s)")
    add_decision_options(parser)
    parser.add_argument("--match", choices=METHODS, default="nearest",
                        help="nearest: the nearest photo names the face; knn: the k nearest photos vote (default: %(default)s)")
    parser.add_argument("--k", type=bounded(int, 1), default=None, help="with --match knn: photos that vote (default: sqrt of the photos)")
    parser.add_argument("--detector", choices=DETECTORS, default=DetectorSettings.detector,
                        help="face detector: mtcnn (a CNN cascade on ONNX Runtime: finds more faces, faster), hog "
                             "(dlib's HOG) or cnn (dlib's CNN, slow on a CPU) (default: %(default)s)")
    parser.add_argument("--model", choices=DETECTORS, dest="detector", default=argparse.SUPPRESS,
                        help="the same as --detector")
    parser.add_argument("--mtcnn-thresholds", type=bounded(float, 0, 1), nargs=3, metavar=("P", "R", "O"),
                        default=DetectorSettings.thresholds,
                        help="with --detector mtcnn: the face probability each stage (P-Net, R-Net, O-Net) needs "
                             "(default: %(default)s, the authors' values)")
    parser.add_argument("--encoder", choices=ENCODERS, default="onnx",
                        help="onnx: dlib's face network on ONNX Runtime; dlib: in dlib itself; the same encodings "
                             "(default: %(default)s)")
    parser.add_argument("--providers", nargs="+", metavar="P", default=(),
                        help="with --encoder onnx: ONNX Runtime execution providers in order of preference, "
                             "e.g. CUDAExecutionProvider (default: the CPU; a provider not installed is refused, "
                             "naming those that are)")
    parser.add_argument("--upsample", type=bounded(int, 0), default=None, metavar="N",
                        help="with --detector hog or cnn: run dlib's N-fold upsampling on the full image instead "
                             "of automatic scaling")
    parser.add_argument("--min-face", type=int, default=DetectorSettings.min_face, metavar="PX",
                        help="automatic scaling finds faces down to this size (default: %(default)s)")
    parser.add_argument("--min-face-fraction", type=bounded(float, 0, 1), default=1 / 16, metavar="F",
                        help="...but in large images, not below this fraction of the short side (default: 1/16)")
    parser.add_argument("--detect-threads", choices=("auto", "1", "2"), default=DetectorSettings.detect_threads,
                        help="threads that share a picture's detection; auto: two when a core is idle "
                             "(default: %(default)s)")
    parser.add_argument("--max-megapixels", type=bounded(float, 0, above=True), default=DEFAULT_MAX_PIXELS / 1e6,
                        help="refuse larger images (default: %(default)g)")
    parser.add_argument("--db", metavar="URL",
                        help="the gallery database: sqlite:///PATH or postgresql://... (default: "
                             "sqlite:///KNOWN_FACES/.facewire.db); workers on other hosts given the same "
                             "PostgreSQL URL need no copy of the folder")
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    parser.add_argument("--http", type=host_port, metavar="HOST:PORT",
                        help="also start the HTTP gateway and web pages there (python -m facewire.http), "
                             "e.g. 127.0.0.1:8000")
    parser.add_argument("--http-token-file", type=token_file, metavar="FILE",
                        help="with --http: the bearer token every HTTP call must carry (needed off loopback)")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    args = parser.parse_args(argv)
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
    if args.upsample is not None and args.detector == "mtcnn":
        parser.error("--upsample goes with --detector hog or cnn (MTCNN scales its picture itself)")
    if args.k is not None and args.match != "knn":
        parser.error("--k goes with --match knn")
    args.matching = match_settings(parser, args, args.match, args.k)
    if args.providers and args.encoder != "onnx":
        parser.error("--providers goes with --encoder onnx")
    if args.providers:
        check_providers(parser, args.providers)
    if args.http is None and args.http_token_file is not None:
        parser.error("--http-token-file goes with --http")
    if args.http is not None and args.worker:
        parser.error("--http does nothing with --worker (start the gateway beside the server)")
    if args.http is not None and not is_loopback(args.http[0]) and args.http_token_file is None:
        parser.error(f"--http {args.http[0]} can be reached from other hosts: give --http-token-file FILE, "
                     "so that every HTTP call must carry its bearer token")
    if args.cache is not None:
        parser.error("--cache is gone: encodings live in the gallery database now (--db URL, by default "
                     "KNOWN_FACES/.facewire.db); delete the old .npz")
    if args.db is not None and not args.db.startswith(("sqlite:///", "postgresql://", "postgres://")):
        parser.error(f"--db {args.db!r}: give sqlite:///PATH or postgresql://...")
    if args.db is None and not args.known_faces.is_dir():
        parser.error(f"--known-faces {args.known_faces}: no such folder (or give --db URL)")
    if args.min_face < 1:  # checked here, so that its declaration stays as it is
        parser.error(f"argument --min-face: {args.min_face} is not 1 or more")
    return args


def check_providers(parser: argparse.ArgumentParser, providers: list[str]) -> None:
    """Refuse execution providers ONNX Runtime does not have here (imported only then: 0.1 s of every start)."""
    import onnxruntime  # noqa: PLC0415

    unknown = [name for name in providers if name not in onnxruntime.get_available_providers()]
    if unknown:
        parser.error(f"--providers {' '.join(unknown)}: not installed; ONNX Runtime has "
                     f"{', '.join(onnxruntime.get_available_providers())}")


def configuration(args: argparse.Namespace) -> Config:
    """The one configuration of this server (or worker), from its command line."""
    return Config(
        known_faces=args.known_faces, db=args.db,
        detector=DetectorSettings(args.detector, args.upsample, args.min_face, args.min_face_fraction, args.encoder,
                                  tuple(args.providers), args.detect_threads, tuple(args.mtcnn_thresholds)),
        matching=args.matching,
        limits=Limits(int(args.max_megapixels * 1e6)),
        bind=args.bind, workers=args.workers, worker_bind=args.worker_bind, connect=args.connect,
        security=Security(args.keys, args.key, args.server_key), hang_timeout=args.hang_timeout,
        allow_poor_photos=args.allow_poor_photos,
        read_only=args.read_only, log_level=args.log_level, http=None if args.http is None else Gateway(
            bind=join_host_port(*args.http), token_file=args.http_token_file,
            limits=Limits(int(args.max_megapixels * 1e6)), log_level=args.log_level),
    )


def main() -> None:
    started = time.monotonic()
    args = parse_args()
    config = configuration(args)
    configure_logging(config.log_level)
    signer = tracker()  # made once here: local workers inherit its secret in their environment (not in ps)
    check_gallery_db(config)
    if not args.worker and config.workers != 1:
        run_supervisor(config, started)  # its worker template loads dlib and the models, never the supervisor
        return
    from facewire.serve.worker import run_here  # noqa: PLC0415 - dlib and ONNX Runtime: 0.4 s a supervisor skips

    run_here(config, signer, started)
