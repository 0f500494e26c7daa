#!/usr/bin/env python3
"""Compare dlib builds: HOG detection ms and face-encoding ms, each in its own interpreter.

    .venv/bin/python bench/bench_dlib.py --build "dlib-bin=.venv/bin/python" \\
        --build "source -march=native=/path/to/other/venv/bin/python"

Each build runs twice: with its default BLAS threads and with OPENBLAS_NUM_THREADS=1
(as every worker runs). The photo is ../shared/data/faces/test/obama-720p.jpg at
1280x720 and reduced to 640x360; HOG runs on RGB with one upsample, as face_recognition does.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PHOTO = ROOT.parent / "shared" / "data" / "faces" / "test" / "obama-720p.jpg"


def median_ms(call, repeat: int) -> float:
    call()  # warm-up
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def measure(photo: Path, repeat: int) -> dict:
    """Run inside the build's interpreter: time HOG and encoding."""
    import cv2
    import dlib
    import face_recognition.api as fr

    rgb720 = cv2.cvtColor(cv2.imread(str(photo)), cv2.COLOR_BGR2RGB)
    rgb360 = cv2.resize(rgb720, (640, 360), interpolation=cv2.INTER_AREA)
    [box] = fr.face_detector(rgb720, 1)
    shapes = dlib.full_object_detections()
    shapes.append(fr.pose_predictor_5_point(rgb720, box))
    return {
        "version": dlib.__version__,
        "blas": bool(dlib.DLIB_USE_BLAS),
        "hog_360": median_ms(lambda: fr.face_detector(rgb360, 1), repeat),
        "hog_720": median_ms(lambda: fr.face_detector(rgb720, 1), repeat),
        "encode": median_ms(lambda: fr.face_encoder.compute_face_descriptor(rgb720, shapes), repeat * 4),
    }


def run_build(python: str, one_thread: bool, repeat: int) -> dict:
    env = dict(os.environ)
    if one_thread:
        env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    done = subprocess.run([python, __file__, "--measure", "--repeat", str(repeat)], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", action="append", default=[], metavar="LABEL=PYTHON",
                        help="a build to time: a label and the python of the venv it is installed in")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(PHOTO, args.repeat)))
        return
    builds = args.build or [f"this interpreter={sys.executable}"]
    print("| dlib build | BLAS | BLAS threads | HOG 640x360 ms | HOG 1280x720 ms | encode ms/face |")
    print("|---|---|---|---|---|---|")
    for build in builds:
        label, python = build.rsplit("=", 1)
        for one_thread in (False, True):
            r = run_build(python, one_thread, args.repeat)
            print(f"| {label} (dlib {r['version']}) | {'OpenBLAS' if r['blas'] else 'none'} | "
                  f"{'1' if one_thread else 'default'} | {r['hog_360']:.0f} | {r['hog_720']:.0f} | {r['encode']:.1f} |")


if __name__ == "__main__":
    main()
