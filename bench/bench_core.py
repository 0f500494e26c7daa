#!/usr/bin/env python3
"""Core benchmark: facewire against the original demo's method, in one run, on the shared photos.

Prints two Markdown tables:
1. per image: facewire's server time (detect, encode, match, total) and the client's
   round trip over ZeroMQ, beside the baseline's time for the same image and the speed-up;
2. gallery load: facewire cold (empty cache) and warm (cache) against the baseline.

The baseline does what the original demo did (bench/recipes.py): re-encode the gallery at
every start, upscale each image 1.5x, HOG with face_recognition's defaults, encode, and
loop over the known faces in Python. Run: .venv/bin/python bench/bench_core.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.recipes import DemoRecipe  # noqa: E402
from facewire.client.client import Client  # noqa: E402
from facewire.faces import images  # noqa: E402
from facewire.faces.recognize import DetectorSettings  # noqa: E402
from facewire.process import ServerProcess  # noqa: E402
from facewire.store.gallery import load_gallery  # noqa: E402

FACES = ROOT.parent / "shared" / "data" / "faces"


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples):.0f}"


def bench_images(client: Client, baseline: DemoRecipe, paths: list[Path], repeat: int) -> list[str]:
    rows = [
        "| image | size | faces | detect ms | encode ms | match ms | server ms | round trip ms "
        "| baseline ms | speed-up (server) | names | same names as baseline |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    total_server = total_baseline = 0.0
    for path in paths:
        image = images.read_image(path)
        laps: dict[str, list[float]] = {"detect": [], "encode": [], "match": [], "total": []}
        trips, base = [], []
        for _ in range(repeat):
            started = time.perf_counter()
            result = client.recognize(image)
            trips.append((time.perf_counter() - started) * 1000)
            for key in laps:
                laps[key].append(result.timings_ms[key])
            started = time.perf_counter()
            base_names = baseline.names_in(image)
            base.append((time.perf_counter() - started) * 1000)
        total_server += statistics.median(laps["total"])
        total_baseline += statistics.median(base)
        speedup = statistics.median(base) / statistics.median(laps["total"])
        same = sorted(result.names) == sorted(base_names)
        rows.append(
            f"| {path.name} | {image.shape[1]}x{image.shape[0]} | {len(result.names)} | "
            f"{median_ms(laps['detect'])} | {median_ms(laps['encode'])} | {statistics.median(laps['match']):.2f} | "
            f"{median_ms(laps['total'])} | {median_ms(trips)} | {median_ms(base)} | {speedup:.1f}x | "
            f"{', '.join(sorted(result.names)) or '-'} | {'yes' if same else 'no: ' + ', '.join(sorted(base_names))} |"
        )
    rows.append(f"| **all {len(paths)} images** | | | | | | **{total_server:.0f}** | | **{total_baseline:.0f}** "
                f"| **{total_baseline / total_server:.1f}x** | | |")
    return rows


def bench_gallery(known_dir: Path, baseline_seconds: float) -> list[str]:
    settings = DetectorSettings()
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache.npz"
        _, cold = load_gallery(known_dir, settings, cache)
        _, warm = load_gallery(known_dir, settings, cache)
    return [
        "| gallery load | photos | seconds | vs baseline |",
        "|---|---|---|---|",
        f"| baseline (re-encode every start) | {cold.photos} | {baseline_seconds:.2f} | 1.0x |",
        f"| facewire cold (empty cache) | {cold.photos} | {cold.seconds:.2f} | {baseline_seconds / cold.seconds:.1f}x |",
        f"| facewire warm (cache) | {warm.photos} | {warm.seconds:.3f} | {baseline_seconds / warm.seconds:.0f}x |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=Path, default=FACES, help="folder with known/ and test/ (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per image; medians are shown (default: %(default)s)")
    args = parser.parse_args()
    known, probes = args.faces / "known", sorted((args.faces / "test").glob("*.jpg"))
    baseline = DemoRecipe(known)
    with tempfile.TemporaryDirectory() as tmp:
        with ServerProcess(known, Path(tmp) / "server.log", "--cache", str(Path(tmp) / "cache.npz")) as server:
            with Client(server.address, timeout=120) as client:
                client.recognize(images.read_image(probes[0]))  # warm-up
                print("\n".join(bench_images(client, baseline, probes, args.repeat)))
    print()
    print("\n".join(bench_gallery(known, baseline.load_seconds)))


if __name__ == "__main__":
    main()
