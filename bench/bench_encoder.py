#!/usr/bin/env python3
"""Face encoding ms per face on ONE thread: dlib's network in dlib vs on ONNX Runtime.

    .venv/bin/python bench/bench_encoder.py [--rounds 40] [--profile-runs 50]

Both encode the same 150x150 chips (cut as dlib.get_face_chip does from the shared
photos, or the repo's samples), at batch 1 and batch 8, in one process with
OPENBLAS/OMP threads 1 and onnxruntime intra-op threads 1. The configurations take
turns round by round, so that load from other processes on the machine hits all of
them alike; each cell is the median over the rounds. Then ONNX Runtime's own profiler
says where its time goes, per operator type.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy, dlib or onnxruntime start any thread pool

import argparse  # noqa: E402
import collections  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import cv2  # noqa: E402
import dlib  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from facewire.faces import model_files, onnx_encoder, onnx_model, recognize  # noqa: E402
from facewire.faces.settings import DetectorSettings  # noqa: E402

SHARED_FACES = ROOT.parent / "shared" / "data" / "faces"
LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return f"{fields.get('Model name', '?').strip()}, {fields.get('CPU(s)', '?').strip()} CPUs"


def bench_chips(count: int = 8) -> np.ndarray:
    """`count` chips of real faces (repeated if fewer are found)."""
    pictures = sorted(SHARED_FACES.glob("test/*.jpg")) or sorted((ROOT / "test_images").glob("*.jpg"))
    chips: list[np.ndarray] = []
    for path in pictures:
        bgr = cv2.imread(str(path))
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        shapes = [recognize.landmarks_5()(rgb, dlib.rectangle(left, top, right, bottom))
                  for top, right, bottom, left in recognize.detect_faces(bgr, DetectorSettings())]
        chips.extend(onnx_encoder.face_chips(rgb, shapes))
        if len(chips) >= count:
            break
    return np.stack([chips[i % len(chips)] for i in range(count)])


def interleaved_medians(calls: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median ms of each call, the calls taking turns once per round after a warm-up."""
    for call in calls.values():
        call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            samples[name].append((time.perf_counter() - started) * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def encoders(model: Path) -> dict[str, onnx_encoder.OnnxFaceEncoder]:
    return {level: onnx_encoder.OnnxFaceEncoder(model, options=onnx_encoder.session_options(1, value))
            for level, value in LEVELS.items()}


def timing_table(chips: np.ndarray, model: Path, rounds: int) -> str:
    face_encoder = recognize.face_encoder()
    calls: dict[str, Callable[[], object]] = {}
    for batch in (1, 8):
        batch_chips = chips[:batch]
        calls[f"dlib-bin|{batch}"] = lambda c=batch_chips: face_encoder.compute_face_descriptor(list(c))
        for level, encoder in encoders(model).items():
            calls[f"ONNX Runtime ({level})|{batch}"] = lambda e=encoder, c=batch_chips: e.encode(c)
    ms = interleaved_medians(calls, rounds)
    lines = ["| encoder | batch 1: ms/face | vs dlib-bin | batch 8: ms/face | vs dlib-bin |",
             "|---|---|---|---|---|"]
    for name in dict.fromkeys(key.split("|")[0] for key in ms):
        cells = []
        for batch in (1, 8):
            per_face = ms[f"{name}|{batch}"] / batch
            cells += [f"{per_face:.1f}", f"{ms[f'dlib-bin|{batch}'] / batch / per_face:.2f}x"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def profile_table(chips: np.ndarray, model: Path, runs: int) -> str:
    """Time per operator type from onnxruntime's profiler, at batch 1, level "all"."""
    options = onnx_encoder.session_options()
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as folder:
        options.profile_file_prefix = str(Path(folder) / "ort")
        encoder = onnx_encoder.OnnxFaceEncoder(model, options=options)
        for _ in range(runs + 1):
            encoder.encode(chips[:1])
        events = json.loads(Path(encoder.session.end_profiling()).read_text())
    per_op: collections.Counter[str] = collections.Counter()
    counts: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_op[event["args"]["op_name"]] += event["dur"]
            counts[event["args"]["op_name"]] += 1
    total = sum(per_op.values())
    lines = ["| operator (after optimisation) | nodes | ms per face | share |", "|---|---|---|---|"]
    for op, micros in per_op.most_common():
        lines.append(f"| {op} | {counts[op] // (runs + 1)} | {micros / (runs + 1) / 1000:.2f} "
                     f"| {100 * micros / total:.0f}% |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=40, help="timed rounds per configuration")
    parser.add_argument("--profile-runs", type=int, default=50, help="batch-1 runs under the profiler")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        model = onnx_model.convert(model_files.default_dat(), Path(folder) / "face.onnx")
        chips = bench_chips()
        print(f"CPU: {cpu_model()}; dlib {dlib.__version__} (BLAS {'on' if dlib.DLIB_USE_BLAS else 'off'}), "
              f"onnxruntime {ort.__version__}; one thread; median of {args.rounds} interleaved rounds\n")
        print(timing_table(chips, model, args.rounds))
        print(f"\nONNX Runtime profile, batch 1, optimisation level all, {args.profile_runs} runs:\n")
        print(profile_table(chips, model, args.profile_runs))


if __name__ == "__main__":
    main()
