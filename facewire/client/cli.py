"""facewire client: send images to a facewire server, show or save the labelled result."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from tqdm import tqdm

from facewire.args import bounded, file_to_write, folder_to_write, person_name
from facewire.client import DEFAULT_SERVER, Client, Result, ServerError, ServerUnavailable, show
from facewire.client.report import Report
from facewire.client.video import FrameSource, Meter, overlay_fps, stream
from facewire.faces.images import ImageError, is_image_path, read_image
from facewire.wire.keys import KeysError, load_client_keys
from facewire.wire.protocol import ENCODINGS

DEFAULT_SAVE_DIR = Path("facewire-output")
EXIT_IMAGE_ERRORS, EXIT_NO_SERVER = 1, 2
EXIT_STATUS = ("exit status: 0 when every image was answered; 1 when some could not be read or were refused "
               "(the others are still done); 2 when the server did not answer (each image left unanswered "
               "gets an error line)")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, epilog=EXIT_STATUS)
    parser.add_argument("inputs", nargs="*", type=Path, metavar="IMAGE|DIR", help="image files and/or folders of images")
    parser.add_argument("--server", default=DEFAULT_SERVER, help="server address (default: %(default)s)")
    parser.add_argument("-r", "--recursive", action="store_true", help="look for images in sub-folders too")
    parser.add_argument("--no-show", action="store_true", help="do not open a window")
    parser.add_argument("--save", type=folder_to_write, metavar="DIR",
                        help=f"save annotated images here (default without a display: {DEFAULT_SAVE_DIR})")
    parser.add_argument("--json", action="store_true", help="print one JSON object per image")
    parser.add_argument("--report", type=file_to_write, metavar="FILE.csv|FILE.json",
                        help="write every face (file, name, distance, box) and every error to a report")
    parser.add_argument("--tolerance", type=bounded(float, 0, 2), default=None,
                        help="override the server's tolerance, in [0, 2]")
    parser.add_argument("--timeout", type=bounded(float, 0, above=True), default=20.0,
                        help="seconds to wait for each reply (default: %(default)s)")
    parser.add_argument("--retries", type=bounded(int, 0), default=2,
                        help="resends after a timeout (default: %(default)s)")
    parser.add_argument("--in-flight", type=bounded(int, 1), default=4, metavar="N",
                        help="requests kept in flight, so several workers stay busy (default: %(default)s)")
    parser.add_argument("--wire", choices=ENCODINGS, default="raw",
                        help="send images raw (fastest on a LAN) or as jpeg/png (for slow links)")
    parser.add_argument("--key", type=Path, metavar="FILE", help="this client's CURVE key pair (NAME.key_secret)")
    parser.add_argument("--server-key", type=Path, metavar="FILE", help="the server's public CURVE key (server.key)")
    parser.add_argument("--video", type=Path, metavar="FILE", help="recognise a video file, shown live")
    parser.add_argument("--camera", type=bounded(int, 0), metavar="N",
                        help="recognise camera N (0: the first), shown live")
    parser.add_argument("--output", type=file_to_write, metavar="FILE.mp4",
                        help="write the annotated video (with --no-show, every frame of a file is processed)")
    parser.add_argument("--ping", action="store_true", help="exit 0 if the server answers, 2 if not")
    parser.add_argument("--enroll", type=person_name, metavar="NAME",
                        help="add the one PHOTO given (exactly one face) as NAME")
    parser.add_argument("--list", action="store_true", help="list the people in the gallery and their photo counts")
    parser.add_argument("--remove", type=person_name, metavar="NAME", help="remove a person from the gallery")
    parser.add_argument("--reload", action="store_true", help="make the server re-read known_faces/ now")
    parser.add_argument("--verify", action="store_true",
                        help="whether the faces of the two IMAGEs given (one face each) are the same person, or "
                             "the one IMAGE's face is --name's; prints the decision and the distance")
    parser.add_argument("--name", type=person_name, metavar="NAME", help="with --verify: the gallery's person")
    args = parser.parse_args()
    check_together(parser, args)
    return args


def check_together(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse flags that cannot work together, before anything is sent."""
    modes = [flag for flag, given in (("--ping", args.ping), ("--enroll", args.enroll is not None),
                                      ("--list", args.list), ("--remove", args.remove is not None),
                                      ("--reload", args.reload), ("--video", args.video is not None),
                                      ("--camera", args.camera is not None), ("--verify", args.verify)) if given]
    if len(modes) > 1:
        parser.error(f"{' and '.join(modes)} go one at a time")
    mode = modes[0] if modes else None
    if mode == "--enroll" and len(args.inputs) != 1:
        parser.error("--enroll NAME takes exactly one PHOTO")
    if mode == "--verify" and len(args.inputs) != (1 if args.name is not None else 2):
        parser.error("--verify takes two IMAGEs, or one IMAGE and --name NAME")
    if args.name is not None and mode != "--verify":
        parser.error("--name goes with --verify")
    if mode not in (None, "--enroll", "--verify") and args.inputs:
        parser.error(f"{mode} takes no IMAGE or DIR")
    if mode is None and not args.inputs:
        parser.error("give at least one IMAGE or DIR (or --video, --camera, --ping, --list, ...)")
    if args.output is not None and mode not in ("--video", "--camera"):
        parser.error("--output goes with --video or --camera")
    image_run_only = [flag for flag, given in (("--report", args.report is not None),
                                               ("--save", args.save is not None), ("--recursive", args.recursive),
                                               ("--tolerance", args.tolerance is not None and mode != "--verify"))
                      if given]
    if mode is not None and image_run_only:
        parser.error(f"{image_run_only[0]} does nothing with {mode}")
    if bool(args.key) != bool(args.server_key):
        parser.error("--key and --server-key go together")


def image_paths(inputs: list[Path], recursive: bool) -> list[Path]:
    """Files as given; folders expanded to the images in them, sorted."""
    paths = []
    for item in inputs:
        if item.is_dir():
            found = item.rglob("*") if recursive else item.iterdir()
            paths += sorted(p for p in found if is_image_path(p))
        else:
            paths.append(item)
    return paths


def describe(path: Path, result: Result, as_json: bool) -> str:
    if as_json:
        return json.dumps({"image": str(path), "faces": [face.to_json() for face in result.faces]}, ensure_ascii=False)
    return f"{path}: {', '.join(result.names) or 'no face'}"


def main() -> int:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        keys = load_client_keys(args.key, args.server_key)
    except KeysError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NO_SERVER
    with Client(args.server, args.timeout, args.retries, args.wire, keys) as client:
        try:
            if args.ping:
                print(json.dumps(client.ping()))
                return 0
            if args.enroll is not None or args.remove is not None or args.list or args.reload:
                return gallery_command(client, args)
            if args.verify:
                return verify_command(client, args)
            if args.video is not None or args.camera is not None:
                return run_video(client, args)
            return recognize_all(client, args)
        except ServerUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_NO_SERVER


def run_video(client: Client, args: argparse.Namespace) -> int:
    """Stream a file or camera through the server; show it live, write it, or print faces per frame."""
    capture = cv2.VideoCapture(str(args.video) if args.video is not None else args.camera)
    if not capture.isOpened():
        print(f"error: cannot open {args.video if args.video is not None else f'camera {args.camera}'}", file=sys.stderr)
        return EXIT_IMAGE_ERRORS
    window = not args.no_show and show.display_available()
    if not window and not args.no_show:
        print("no display found: add --output FILE.mp4 to keep the annotated video", file=sys.stderr)
    every_frame = args.video is not None and not window and args.output is not None
    source = FrameSource(capture, realtime=not every_frame)
    meter, writer, frames, names = Meter(), None, 0, set()
    started = time.monotonic()
    try:
        for result in stream(client, source, args.in_flight, annotate=window or args.output is not None):
            frames += 1
            names.update(result.names)
            fps = meter.tick()
            if args.json:
                print(json.dumps({"frame": frames - 1, "faces": [face.to_json() for face in result.faces]},
                                 ensure_ascii=False), flush=True)
            if result.image is None:
                continue
            image = overlay_fps(result.image.copy(), fps)
            if args.output is not None:
                writer = writer or cv2.VideoWriter(str(args.output), cv2.VideoWriter_fourcc(*"mp4v"), source.fps,
                                                   (image.shape[1], image.shape[0]))
                writer.write(image)
            if window and not show.show_frame(image, "facewire video"):
                break
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    seconds = time.monotonic() - started
    print(f"video: {frames} frames answered, {source.skipped} skipped to keep pace, "
          f"{frames / max(seconds, 1e-6):.1f} fps; names seen: {', '.join(sorted(names)) or 'none'}", file=sys.stderr)
    return 0


def gallery_command(client: Client, args: argparse.Namespace) -> int:
    """--enroll, --list, --remove or --reload: print the outcome."""
    try:
        if args.enroll is not None:
            reply = client.enroll(args.enroll, read_image(args.inputs[0]))
            print(f"enrolled {reply['name']}: {reply['photos']} photo(s)")
        elif args.remove is not None:
            reply = client.gallery_op("remove", name=args.remove)
            print(f"removed {reply['name']}: {reply['removed']} photo(s)")
        elif args.list:
            for name, count in client.gallery_op("list")["people"].items():
                print(f"{name}\t{count}")
        else:
            reply = client.gallery_op("reload")
            print(f"reloaded: {reply['people']} people, {reply['photos']} photos")
    except (ImageError, ServerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_IMAGE_ERRORS
    return 0


def verify_command(client: Client, args: argparse.Namespace) -> int:
    """--verify: one line, the decision and the distance (and the threshold it was judged by)."""
    try:
        first, *second = [read_image(path) for path in args.inputs]
        reply = client.verify(first, second[0] if second else None, args.name, args.tolerance)
    except (ImageError, ServerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_IMAGE_ERRORS
    print(f"{reply['decision']}: distance {reply['distance']} (threshold {reply['threshold']})")
    return 0


def load(paths: list[Path]) -> Iterator[np.ndarray | ImageError]:
    """Each image, read as it is needed; a file that cannot be read yields its error instead."""
    for path in paths:
        try:
            yield read_image(path)
        except ImageError as exc:
            yield exc


def recognize_all(client: Client, args: argparse.Namespace) -> int:
    """One result line or one error line (and report rows) per image; the exit status as in EXIT_STATUS."""
    window = not args.no_show and show.display_available()
    save_dir = args.save
    if not window and not args.no_show and save_dir is None:
        save_dir = DEFAULT_SAVE_DIR
        print(f"no display found: saving annotated images to {save_dir}/", file=sys.stderr)
    paths = image_paths(args.inputs, args.recursive)
    outcomes = client.recognize_many(load(paths), args.in_flight, window or save_dir is not None, args.tolerance)
    report = Report()
    failures = unanswered = 0
    with tqdm(total=len(paths), unit="image", disable=not sys.stderr.isatty() or len(paths) < 2) as progress:
        for path, outcome in zip(paths, outcomes, strict=True):  # one outcome per path, or a ValueError
            progress.update()
            if isinstance(outcome, Exception):
                message = str(outcome) if isinstance(outcome, ImageError) else f"{path}: {outcome}"
                tqdm.write(f"error: {message}", file=sys.stderr)
                report.add_error(path, message)
                failures += 1
                unanswered += isinstance(outcome, ServerUnavailable)
                continue
            tqdm.write(describe(path, outcome, args.json), file=sys.stdout)
            report.add(path, outcome.faces)
            if save_dir is not None:
                tqdm.write(f"saved {show.save(outcome.image, save_dir, path.name)}", file=sys.stderr)
            if window and not show.show(outcome.image, f"facewire: {path.name}"):
                break
    if args.report:
        report.write(args.report)
        print(f"report: {args.report}", file=sys.stderr)
    if unanswered:
        print(f"{unanswered} of {len(paths)} image(s) unanswered: the server is gone", file=sys.stderr)
        return EXIT_NO_SERVER
    return EXIT_IMAGE_ERRORS if failures else 0

