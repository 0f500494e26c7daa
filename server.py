#!/usr/bin/env python3
"""facewire server: load known_faces/ and answer recognition requests over ZeroMQ."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

import zmq

from facewire.gallery import load_gallery
from facewire.protocol import DEFAULT_MAX_PIXELS, Limits
from facewire.recognize import DetectorSettings
from facewire.server import bind_rep, dlib_description, serve
from facewire.service import Service

log = logging.getLogger("facewire")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--known-faces", type=Path, default=Path("known_faces"),
                        help="gallery folder: NAME.jpg files and/or NAME/ folders of photos (default: %(default)s)")
    parser.add_argument("--bind", default="tcp://127.0.0.1:5555", help="ZeroMQ address to bind (default: %(default)s)")
    parser.add_argument("--tolerance", type=float, default=0.6,
                        help="largest face distance still given a name; lower is stricter (default: %(default)s)")
    parser.add_argument("--model", choices=("hog", "cnn"), default="hog", help="face detector (default: %(default)s)")
    parser.add_argument("--upsample", type=int, default=None, metavar="N",
                        help="run dlib's N-fold upsampling on the full image instead of automatic scaling")
    parser.add_argument("--min-face", type=int, default=30, metavar="PX",
                        help="automatic scaling finds faces down to this size (default: %(default)s)")
    parser.add_argument("--min-face-fraction", type=float, default=1 / 16, metavar="F",
                        help="...but in large images, not below this fraction of the short side (default: 1/16)")
    parser.add_argument("--max-megapixels", type=float, default=DEFAULT_MAX_PIXELS / 1e6,
                        help="refuse larger images (default: %(default)g)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="encoding cache file (default: KNOWN_FACES/.facewire-cache.npz)")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log.info("running %s", dlib_description())
    settings = DetectorSettings(args.model, args.upsample, args.min_face, args.min_face_fraction)
    if not args.known_faces.is_dir():
        raise SystemExit(f"gallery folder {args.known_faces} does not exist")
    gallery, stats = load_gallery(args.known_faces, settings, args.cache)
    log.info(
        "gallery %s: %d photos, %d encoded, %d from cache, %d skipped",
        args.known_faces, stats.photos, stats.encoded, stats.from_cache, len(stats.skipped),
    )
    service = Service(gallery, settings, args.tolerance, Limits(int(args.max_megapixels * 1e6)))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    context = zmq.Context()
    try:
        socket = bind_rep(context, args.bind, service.limits)
    except zmq.ZMQError as exc:
        raise SystemExit(f"cannot bind {args.bind}: {exc}") from None
    log.info(
        "ready on %s: %d people, %d photos, loaded in %.2f s",
        socket.getsockopt_string(zmq.LAST_ENDPOINT), len(gallery.people), len(gallery.names), stats.seconds,
    )
    serve(service, socket, stop)
    context.term()


if __name__ == "__main__":
    main()
