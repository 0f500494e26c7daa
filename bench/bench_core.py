#!/usr/bin/env python3
"""Core benchmark: facewire against the original demo's method, in one run, on the shared photos.

Prints two Markdown tables:
1. per image (the shared test photos and the repo's samples): for each configuration (CONFIGS:
   the default (MTCNN); one detection thread; dlib's HOG detector; dlib's own encoder), facewire's server time (detect,
   encode, total; one worker), beside the baseline's time for the same image and the speed-up;
   totals and the geometric mean of the speed-ups;
2. gallery load: facewire cold (empty database) and warm (database) against the baseline.

The baseline does what the original demo did (bench/recipes.py): re-encode the gallery at
every start, upscale each image 1.5x, HOG with face_recognition's defaults, encode, and
loop over the known faces in Python. Run: .venv/bin/python bench/bench_core.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.recipes import DemoRecipe  # noqa: E402
from facewire.client.client import Client  # noqa: E402
from facewire.faces import images  # noqa: E402
from facewire.faces.settings import DetectorSettings  # noqa: E402
from facewire.process import ServerProcess  # noqa: E402
from facewire.store.live import folder_gallery  # noqa: E402

FACES = ROOT.parent / "shared" / "data" / "faces"
CONFIGS = {
    "default": (),
    "1-thread": ("--detect-threads", "1"),
    "hog": ("--detector", "hog"),
    "dlib": ("--encoder", "dlib"),
}
"""Server configurations by name: the extra arguments of each."""


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples):.0f}"


def bench_images(clients: dict[str, Client], baseline: DemoRecipe, paths: list[Path], repeat: int) -> list[str]:
    """One row per image: each encoder's server time and speed-up over the baseline, and whether the
    names agree; then the totals and the geometric mean of the per-image speed-ups."""
    head = " | ".join(f"{name}: detect / encode / server ms | {name}: speed-up" for name in clients)
    rows = [f"| image | size | faces | {head} | baseline ms | names | same names as baseline |",
            "|---|---|---|" + "---|---|" * len(clients) + "---|---|---|"]
    totals = dict.fromkeys(clients, 0.0)
    speedups: dict[str, list[float]] = {name: [] for name in clients}
    total_baseline = 0.0
    for path in paths:
        image = images.read_image(path)
        base, base_names = [], []
        laps = {name: {"detect": [], "encode": [], "total": []} for name in clients}
        results = {}
        for _ in range(repeat):  # the configurations take turns, so that a slow moment hits them alike
            for name, client in clients.items():
                results[name] = client.recognize(image)
                for key in laps[name]:
                    laps[name][key].append(results[name].timings_ms[key])
            started = time.perf_counter()
            base_names = baseline.names_in(image)
            base.append((time.perf_counter() - started) * 1000)
        total_baseline += statistics.median(base)
        cells = []
        for name in clients:
            server = statistics.median(laps[name]["total"])
            totals[name] += server
            speedups[name].append(statistics.median(base) / server)
            cells.append(f"{median_ms(laps[name]['detect'])} / {median_ms(laps[name]['encode'])} / {server:.0f} | "
                         f"{speedups[name][-1]:.1f}x")
        names = sorted(next(iter(results.values())).names)
        agree = all(sorted(result.names) == names for result in results.values())
        same = agree and names == sorted(base_names)
        rows.append(f"| {path.name} | {image.shape[1]}x{image.shape[0]} | {len(names)} | {' | '.join(cells)} | "
                    f"{median_ms(base)} | {', '.join(names) or '-'} | "
                    f"{'yes' if same else 'no: ' + ', '.join(sorted(base_names))} |")
    cells = [f"**{totals[name]:.0f}** | **{total_baseline / totals[name]:.1f}x** total, "
             f"**{statistics.geometric_mean(speedups[name]):.1f}x** geometric mean" for name in clients]
    rows.append(f"| **all {len(paths)} images** | | | {' | '.join(cells)} | **{total_baseline:.0f}** | | |")
    return rows


def bench_gallery(known_dir: Path, baseline_seconds: float) -> list[str]:
    settings = DetectorSettings()
    with tempfile.TemporaryDirectory() as tmp:
        database = f"sqlite:///{tmp}/gallery.db"
        _, cold = folder_gallery(known_dir, settings, database)
        _, warm = folder_gallery(known_dir, settings, database)
    return [
        "| gallery load | photos | seconds | vs baseline |",
        "|---|---|---|---|",
        f"| baseline (re-encode every start) | {cold.sync.seen} | {baseline_seconds:.2f} | 1.0x |",
        f"| facewire cold (empty database) | {cold.sync.seen} | {cold.seconds:.2f} | "
        f"{baseline_seconds / cold.seconds:.1f}x |",
        f"| facewire warm (database) | {warm.sync.seen} | {warm.seconds:.3f} | "
        f"{baseline_seconds / warm.seconds:.0f}x |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=Path, default=FACES, help="folder with known/ and test/ (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per image; medians are shown (default: %(default)s)")
    parser.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS),
                        help="default: the default server; 1-thread: --detect-threads 1; hog: --detector hog; "
                             "dlib: --encoder dlib (default: all)")
    args = parser.parse_args()
    known = args.faces / "known"
    probes = sorted((args.faces / "test").glob("*.jpg")) + sorted((ROOT / "test_images").glob("*.jpg"))
    baseline = DemoRecipe(known)
    print(f"CPU: {cpu_model()}\n")
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        clients = {}
        for name in args.configs:
            server = stack.enter_context(ServerProcess(known, Path(tmp) / f"{name}.log", "--workers", "1",
                                                       *CONFIGS[name], "--db", f"sqlite:///{Path(tmp) / f'{name}.db'}"))
            clients[name] = stack.enter_context(Client(server.address, timeout=120))
            clients[name].recognize(images.read_image(probes[0]))  # warm-up
        print("\n".join(bench_images(clients, baseline, probes, args.repeat)))
    print()
    print("\n".join(bench_gallery(known, baseline.load_seconds)))


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")


if __name__ == "__main__":
    main()
