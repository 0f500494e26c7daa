#!/usr/bin/env python3
"""The 640x360 clip through the real server: frames per second, and faces found, per configuration and scan.

    .venv/bin/python bench/bench_video.py [--workers 2] [--configs mtcnn hog]

The gallery is the clip's two portraits (../shared/data/faces/video/*.png). For each configuration
(CONFIGS: the default, MTCNN; dlib's HOG; dlib's own encoder) a server runs with --workers N. First the
real client writes the annotated clip, every frame (`client.py --video CLIP --no-show --output
FILE.mp4`: its own fps line); then the client's stream runs in this process (a) with every frame
scanned whole and encoded (every frame a keyframe: no track tokens) and (b) as the client does
by default: track tokens, tracked scans between keyframes, a whole scan every KEYFRAME-th frame
(every SEARCH_KEYFRAME-th while no face is tracked).
"every frame" sends all 275 frames as fast as the server answers; "live" plays the clip at its
own 29.97 fps and skips frames that are already late. Faces found are summed over the frames
answered; the clip's real time is the bar (29.97 fps).
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import cv2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from facewire.client import Client, video  # noqa: E402
from facewire.process import ServerProcess  # noqa: E402

VIDEO = ROOT.parent / "shared" / "data" / "faces" / "video"
CLIP = VIDEO / "short_hamilton_clip.mp4"
CONFIGS = {"mtcnn": (), "hog": ("--detector", "hog"), "dlib": ("--encoder", "dlib")}
"""Server configurations by name: the extra arguments of each (mtcnn is the default)."""


def written(address: str, output: Path) -> float:
    """The real client writing the annotated clip, every frame: the fps it reports."""
    done = subprocess.run([sys.executable, str(ROOT / "client.py"), "--server", address, "--video", str(CLIP),
                           "--no-show", "--output", str(output)], capture_output=True, text=True, check=True)
    return float(done.stderr.rsplit(" fps", 1)[0].rsplit(" ", 1)[1])


def run(address: str, realtime: bool, whole: bool) -> tuple[int, int, float, int, set[str]]:
    """(frames answered, frames skipped, fps, faces found, names) for one pass over the clip."""
    capture = cv2.VideoCapture(str(CLIP))
    source = video.FrameSource(capture, realtime=realtime)
    frames = faces = 0
    names: set[str] = set()
    every_frame = mock.patch.multiple(video, KEYFRAME=1, SEARCH_KEYFRAME=1) if whole else contextlib.nullcontext()
    with Client(address, timeout=30) as client, every_frame:
        started = time.monotonic()
        for result in video.stream(client, source, in_flight=4, annotate=True):
            frames += 1
            faces += len(result.faces)
            names.update(name for name in result.names if name != "Unknown")
        seconds = time.monotonic() - started
    capture.release()
    return frames, source.skipped, frames / seconds, faces, names


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=["mtcnn", "hog"])
    args = parser.parse_args()
    if not CLIP.exists():
        raise SystemExit(f"{CLIP} not found")
    print(f"CPU: {cpu_model()}; clip {CLIP.name}, --workers {args.workers}\n")
    print("| server | written by client.py, every frame: fps | scan | every frame: fps | faces found | "
          "live: frames answered | live fps | names |")
    print("|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        known = Path(tmp) / "known"
        known.mkdir()
        for portrait in VIDEO.glob("*.png"):
            (known / portrait.name).symlink_to(portrait)
        for config in args.configs:
            with ServerProcess(known, Path(tmp) / f"{config}.log", "--workers", str(args.workers), *CONFIGS[config],
                               "--db", f"sqlite:///{Path(tmp) / f'{config}.db'}") as server:
                client_fps = written(server.address, Path(tmp) / f"{config}.mp4")
                for label, whole in (("whole frame, every frame", True),
                                     (f"tracked, whole every {video.KEYFRAME} ({video.SEARCH_KEYFRAME} with no face)",
                                      False)):
                    frames, _, fps, faces, names = run(server.address, False, whole)
                    live, skipped, live_fps, _, _ = run(server.address, True, whole)
                    print(f"| {config} | {client_fps:.1f} | {label} | {fps:.1f} | {faces} in {frames} frames | "
                          f"{live} of {live + skipped} | {live_fps:.1f} | {', '.join(sorted(names))} |", flush=True)


if __name__ == "__main__":
    main()
