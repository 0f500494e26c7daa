#!/usr/bin/env python3
"""Face detectors compared on hand-labelled photos: faces found, false boxes and ms per picture, one thread.

    .venv/bin/python bench/bench_detector.py [--detectors mtcnn hog cnn] [--sets detect cut ...]
        [--min-faces 12 15 20 30] [--min-face-fraction 0.0625] [--rounds 3] [--no-frames]

Each detector (facewire's MTCNN, HOG and dlib's CNN, through detect_faces with detect_threads="1",
OpenBLAS/OpenMP threads 1) runs on the sets of bench/detect_sets.py at each --min-face, under facewire's
scale policy: the smallest face searched is max(min_face, short side * min_face_fraction), the fraction
being facewire's 1/16 unless --min-face-fraction says otherwise (0: min_face in every picture).

A detection matches a label when their boxes overlap by MATCH_IOU (intersection over union), greedily from
the best overlap, each label and each detection at most once; a detection left over is false unless it
overlaps an ignored label by IGNORE_IOU. Each picture is timed --rounds times, the detectors taking turns
round by round, and its ms is the median; a row gives the median and 90th percentile of those over the
pictures. A picture whose smallest face searched is the same at two --min-face settings is detected once
for both (the detectors see nothing of the settings but that size).

Then (unless --no-frames) each detector's ms per 640x360 frame at the default policy: obama-720p.jpg
reduced to 640x360 and every FRAME_STEP-th frame of short_hamilton_clip.mp4 (../shared/data/faces).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy, dlib or onnxruntime start any thread pool

import argparse  # noqa: E402
import datetime  # noqa: E402
import shlex  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable, Hashable, Sequence, TypeVar  # noqa: E402

import cv2  # noqa: E402
import dlib  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.bench_encoder import cpu_model  # noqa: E402
from bench.detect_sets import SETS, Labelled, all_sets  # noqa: E402
from facewire.faces.boxes import Detection, iou, smallest_face  # noqa: E402
from facewire.faces.detection import detect_faces  # noqa: E402
from facewire.faces.settings import DETECTION_REVISION, DETECTORS, Box, DetectorSettings  # noqa: E402

MATCH_IOU = 0.5
IGNORE_IOU = 0.3
SHARED_FACES = ROOT.parent / "shared" / "data" / "faces"
PHOTO = SHARED_FACES / "test" / "obama-720p.jpg"
CLIP = SHARED_FACES / "video" / "short_hamilton_clip.mp4"
FRAME_SIZE = (640, 360)
FRAME_STEP = 10

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Score:
    """Labelled faces, those found, false boxes, and boxes returned in all."""

    labelled: int = 0
    found: int = 0
    false: int = 0
    boxes: int = 0

    def __add__(self, other: Score) -> Score:
        return Score(self.labelled + other.labelled, self.found + other.found, self.false + other.false,
                     self.boxes + other.boxes)


@dataclass
class Run:
    """A detector at one min_face over a set: the score summed, and each picture's ms and smallest face."""

    score: Score = Score()
    ms: list[float] = field(default_factory=list)
    smallest: list[float] = field(default_factory=list)


Results = dict[str, dict[tuple[str, int], Run]]
"""{set: {(detector, min_face): Run}}."""


def scored(picture: Labelled, boxes: Sequence[Box]) -> Score:
    """Greedy matching by overlap: labels found, and the false boxes among `boxes`."""
    pairs = sorted(((iou(label, box), i, j) for i, label in enumerate(picture.boxes)
                    for j, box in enumerate(boxes)), reverse=True)
    labels: set[int] = set()
    matched: set[int] = set()
    for overlap, i, j in pairs:
        if overlap < MATCH_IOU:
            break
        if i not in labels and j not in matched:
            labels.add(i)
            matched.add(j)
    false = sum(all(iou(box, ignored) < IGNORE_IOU for ignored in picture.ignored)
                for j, box in enumerate(boxes) if j not in matched)
    return Score(len(picture.boxes), len(labels), false, len(boxes))


def settings(detector: str, min_face: int = DetectorSettings.min_face,
             fraction: float = DetectorSettings.min_face_fraction) -> DetectorSettings:
    return DetectorSettings(detector=detector, min_face=min_face, min_face_fraction=fraction,
                            detect_threads="1")


def interleaved_runs(calls: dict[K, Callable[[], T]], rounds: int) -> dict[K, tuple[T, float]]:
    """Each call's result and median ms over `rounds` runs, the calls taking turns round by round. Unlike
    bench_encoder.interleaved_medians, no untimed warm-up run of each call: at ~10 s a picture for dlib's CNN
    that would double the benchmark (warm_up loads each detector once instead)."""
    results: dict[K, T] = {}
    samples: dict[K, list[float]] = {key: [] for key in calls}
    for _ in range(rounds):
        for key, call in calls.items():
            started = time.perf_counter()
            results[key] = call()
            samples[key].append((time.perf_counter() - started) * 1000)
    return {key: (results[key], statistics.median(samples[key])) for key in calls}


def warm_up(detectors: Sequence[str], image: np.ndarray) -> None:
    """Load each detector's models (the first call's cost is not a picture's)."""
    for detector in detectors:
        detect_faces(image, settings(detector))


def run_set(pictures: Sequence[Labelled], detectors: Sequence[str], min_faces: Sequence[int], fraction: float,
            rounds: int) -> dict[tuple[str, int], Run]:
    """Every detector at every min_face (and min_face_fraction `fraction`) over the pictures:
    {(detector, min_face): Run}."""
    runs = {(detector, min_face): Run() for detector in detectors for min_face in min_faces}
    for picture in pictures:
        height, width = picture.image.shape[:2]
        smallest = {min_face: smallest_face(height, width, settings("hog", min_face, fraction))
                    for min_face in min_faces}
        calls: dict[tuple[str, float], Callable[[], list[Detection]]] = {
            (detector, size): partial(detect_faces, picture.image, settings(detector, min_face, fraction))
            for detector in detectors for min_face, size in smallest.items()}
        timed = interleaved_runs(calls, rounds)
        for (detector, min_face), run in runs.items():
            found, ms = timed[detector, smallest[min_face]]
            run.score += scored(picture, [detection.box for detection in found])
            run.ms.append(ms)
            run.smallest.append(smallest[min_face])
    return runs


def percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def ms_cells(ms: Sequence[float]) -> str:
    return f"{statistics.median(ms):.0f} | {np.percentile(ms, 90):.0f}"


def span(values: Sequence[float]) -> str:
    low, high = min(values), max(values)
    return f"{low:.0f}" if round(low) == round(high) else f"{low:.0f}-{high:.0f}"


def result_row(first: str, pictures: int, detector: str, min_face: int, run: Run) -> str:
    s = run.score
    return (f"| {first} | {pictures} | {detector} | {min_face} | {span(run.smallest)} | {s.labelled} "
            f"| {s.found} ({percent(s.found, s.labelled)}) | {s.false} ({percent(s.false, s.boxes)}) "
            f"| {ms_cells(run.ms)} |")


RESULT_HEADER = ["| set | pictures | detector | min face | smallest face searched (px) | faces labelled "
                 "| found (recall) | false boxes (% of boxes) | ms median | ms p90 |", "|---" * 10 + "|"]


def set_table(sets: dict[str, list[Labelled]], results: Results) -> list[str]:
    """One row per set, detector and min_face."""
    return RESULT_HEADER + [result_row(name, len(sets[name]), detector, min_face, run)
                            for name, runs in results.items() for (detector, min_face), run in runs.items()]


def summary_table(sets: dict[str, list[Labelled]], results: Results) -> list[str]:
    """One row per detector and min_face, over every set: each picture's ms counts once."""
    totals: dict[tuple[str, int], Run] = {}
    for runs in results.values():
        for key, run in runs.items():
            total = totals.setdefault(key, Run())
            total.score += run.score
            total.ms += run.ms
            total.smallest += run.smallest
    pictures = sum(len(sets[name]) for name in results)
    return RESULT_HEADER + [result_row("all", pictures, detector, min_face, run)
                            for (detector, min_face), run in totals.items()]


def frames() -> list[np.ndarray]:
    """The 640x360 pictures: the photo reduced, and every FRAME_STEP-th frame of the clip."""
    pictures = [cv2.resize(cv2.imread(str(PHOTO)), FRAME_SIZE, interpolation=cv2.INTER_AREA)]
    capture = cv2.VideoCapture(str(CLIP))
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index % FRAME_STEP == 0:
            pictures.append(cv2.resize(frame, FRAME_SIZE, interpolation=cv2.INTER_AREA))
        index += 1
    capture.release()
    return pictures


def frame_table(pictures: Sequence[np.ndarray], detectors: Sequence[str], rounds: int) -> list[str]:
    """Each detector's ms per frame at the default policy, and the faces it found in all."""
    ms: dict[str, list[float]] = {detector: [] for detector in detectors}
    faces = dict.fromkeys(detectors, 0)
    for picture in pictures:
        timed = interleaved_runs({d: partial(detect_faces, picture, settings(d)) for d in detectors}, rounds)
        for detector, (found, picture_ms) in timed.items():
            ms[detector].append(picture_ms)
            faces[detector] += len(found)
    smallest = smallest_face(FRAME_SIZE[1], FRAME_SIZE[0], DetectorSettings())
    rows = [f"| detect time of a 640x360 frame (smallest face {smallest:.1f} px) | frames | faces found "
            "| ms median | ms p90 |", "|---|---|---|---|---|"]
    return rows + [f"| {d} | {len(pictures)} | {faces[d]} | {ms_cells(ms[d])} |" for d in detectors]


def header(args: argparse.Namespace) -> str:
    command = shlex.join([os.path.relpath(sys.executable), *sys.argv])
    return (f"CPU: {cpu_model()}; load average {os.getloadavg()[0]:.1f}; {datetime.date.today()}; "
            f"facewire detection revision {DETECTION_REVISION}, dlib {dlib.__version__}, onnxruntime "
            f"{ort.__version__}; one thread; median of {args.rounds} "
            f"interleaved round(s) per picture; min_face_fraction {args.min_face_fraction:g}; "
            f"match at IoU >= {MATCH_IOU}\ncommand: {command}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=DETECTORS,
                        help="dlib's CNN takes about 10 s a picture here: drop 'cnn' for a quick run")
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--min-faces", nargs="+", type=int, default=[12, 15, 20, 30])
    parser.add_argument("--min-face-fraction", type=float, default=DetectorSettings.min_face_fraction,
                        help="no face smaller than this fraction of a picture's short side is searched "
                        "(default: facewire's 1/16; 0: min_face everywhere)")
    parser.add_argument("--rounds", type=int, default=3, help="timed runs of each picture (median)")
    parser.add_argument("--no-frames", action="store_true", help="skip the 640x360 frame timing")
    args = parser.parse_args()
    sets = all_sets(args.sets)
    print(header(args), flush=True)
    warm_up(args.detectors, next(iter(sets.values()))[0].image)
    results: Results = {}
    for name, pictures in sets.items():
        started = time.perf_counter()
        results[name] = run_set(pictures, args.detectors, args.min_faces, args.min_face_fraction, args.rounds)
        print(f"{name}: {len(pictures)} pictures in {time.perf_counter() - started:.0f} s", file=sys.stderr,
              flush=True)
    print("\n" + "\n".join(set_table(sets, results)))
    print("\n" + "\n".join(summary_table(sets, results)))
    if not args.no_frames:
        print("\n" + "\n".join(frame_table(frames(), args.detectors, args.rounds)))


if __name__ == "__main__":
    main()
