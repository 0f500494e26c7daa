#!/usr/bin/env python3
"""Scaling benchmark: MTCNN against HOG, 1 vs 2 workers, wire formats, 1080p latency, a 1,000-photo gallery, memory.

Run: .venv/bin/python bench/bench_scale.py [--rounds N] [--gallery-size N]
Uses ../shared/data/faces (known/ as the gallery, test/ as the probes). Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from facewire.client.client import Client  # noqa: E402
from facewire.faces import images  # noqa: E402
from facewire.faces.settings import DetectorSettings  # noqa: E402
from facewire.process import ServerProcess  # noqa: E402
from facewire.store.gallery import scan  # noqa: E402
from facewire.store.live import folder_gallery  # noqa: E402
from facewire.wire import protocol  # noqa: E402
from facewire.wire.ping import answers_ping  # noqa: E402

FACES = ROOT.parent / "shared" / "data" / "faces"


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def worker_pids(log: str) -> list[int]:
    return sorted({int(p) for p in re.findall(r"\[(\d+)\]: worker \d+ serving", log)})


def throughput(known: Path, probes: list[np.ndarray], rounds: int, tmp: Path) -> list[str]:
    """Images per second through the real server, against one single-threaded worker doing the same."""
    rows = ["| server | client | reply | images | seconds | images/s | vs 1 worker | worker RSS MiB |",
            "|---|---|---|---|---|---|---|---|"]
    batch = probes * rounds
    cases = [  # (label, workers, in flight, BLAS threads of a lone process, annotated image in the reply)
        ("1 process, default BLAS threads", 1, 1, None, True),
        ("1 worker (1 BLAS thread)", 1, 4, "1", True),
        ("2 workers (1 BLAS thread each)", 2, 4, None, True),
        ("1 worker (1 BLAS thread)", 1, 4, "1", False),
        ("2 workers (1 BLAS thread each)", 2, 4, None, False),
    ]
    base: dict[bool, float] = {}
    for label, workers, in_flight, threads, annotate in cases:
        with pinned_blas(threads), ServerProcess(known, tmp / f"tp{workers}.log", "--workers", str(workers),
                                                 "--db", f"sqlite:///{tmp / 'cache.db'}") as server:
            with Client(server.address, timeout=120) as client:
                list(client.recognize_many(probes, in_flight=in_flight, annotate=annotate))  # warm-up
                started = time.perf_counter()
                results = list(client.recognize_many(batch, in_flight=in_flight, annotate=annotate))
                seconds = time.perf_counter() - started
            assert not any(isinstance(r, Exception) for r in results)
            pids = worker_pids(server.log()) if workers > 1 else [server.process.pid]
            memory = ", ".join(f"{rss_mib(pid):.0f}" for pid in pids)
        rate = len(batch) / seconds
        if threads == "1":
            base[annotate] = rate
        ratio = f"{rate / base[annotate]:.2f}x" if annotate in base else "-"
        reply = "annotated image" if annotate else "data only"
        rows.append(f"| {label} | {in_flight} in flight | {reply} | {len(batch)} | {seconds:.2f} | {rate:.2f} | "
                    f"{ratio} | {memory} |")
    return rows


def detector_throughput(known: Path, probes: list[np.ndarray], rounds: int, tmp: Path) -> list[str]:
    """Images per second through the default server (2 workers), 4 requests in flight, annotated replies,
    with each detector in turn, against dlib's HOG (the default before MTCNN), in one run."""
    rows = ["| detector | images | seconds | images/s | vs hog |", "|---|---|---|---|---|"]
    batch, rates = probes * rounds, {}
    for detector in ("hog", "mtcnn"):
        with ServerProcess(known, tmp / f"detector-{detector}.log", "--workers", "2", "--detector", detector,
                           "--db", f"sqlite:///{tmp / f'detector-{detector}.db'}") as server:
            with Client(server.address, timeout=120) as client:
                list(client.recognize_many(probes, in_flight=4))  # warm-up
                started = time.perf_counter()
                results = list(client.recognize_many(batch, in_flight=4))
                seconds = time.perf_counter() - started
        assert not any(isinstance(r, Exception) for r in results)
        rates[detector] = len(batch) / seconds
        rows.append(f"| {detector} | {len(batch)} | {seconds:.2f} | {rates[detector]:.2f} | "
                    f"{rates[detector] / rates['hog']:.2f}x |")
    return rows


@contextmanager
def pinned_blas(threads: str | None) -> Iterator[None]:
    """Start servers inside this block with OPENBLAS/OMP threads set (None: leave as is)."""
    saved = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    if threads:
        os.environ.update(OPENBLAS_NUM_THREADS=threads, OMP_NUM_THREADS=threads)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def wire_formats(known: Path, tmp: Path, repeat: int = 7) -> list[str]:
    rows = ["| image | wire | request bytes | reply bytes | round trip ms (median) | server ms |", "|---|---|---|---|---|---|"]
    with ServerProcess(known, tmp / "wire.log", "--workers", "1", "--db", f"sqlite:///{tmp / 'cache.db'}") as server:
        for name in ("obama-1080p.jpg", "obama-480p.jpg"):
            image = images.read_image(FACES / "test" / name)
            for wire in protocol.ENCODINGS:
                frames = protocol.pack_request("recognize", image, wire, annotate=True)
                sent = sum(memoryview(f).nbytes for f in frames)
                with Client(server.address, timeout=60, wire=wire) as client:
                    client.recognize(image)
                    trips, server_ms = [], []
                    for _ in range(repeat):
                        started = time.perf_counter()
                        reply = client.request(protocol.pack_request("recognize", image, wire, annotate=True))
                        trips.append((time.perf_counter() - started) * 1000)
                        server_ms.append(protocol.unpack_reply(reply)[0]["timings_ms"]["total"])
                received = sum(len(f) for f in reply)
                rows.append(f"| {name} | {wire} | {sent:,} | {received:,} | {statistics.median(trips):.0f} | "
                            f"{statistics.median(server_ms):.0f} |")
    return rows


def augmented_gallery(source: Path, target: Path, size: int) -> None:
    """`size` photos made from the shared gallery: flipped, rescaled, re-lit, cropped."""
    photos = scan(source)
    generator = np.random.default_rng(0)
    for i in range(size):
        photo = photos[i % len(photos)]
        image = images.read_image(photo.path)
        if i % 2:
            image = cv2.flip(image, 1)
        scale = generator.uniform(0.5, 0.9)
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        image = cv2.convertScaleAbs(image, alpha=generator.uniform(0.8, 1.2), beta=generator.uniform(-20, 20))
        folder = target / f"{photo.name}_{i % 50:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{i:04d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])


def big_gallery(size: int, tmp: Path) -> list[str]:
    known = tmp / f"gallery{size}"
    augmented_gallery(FACES / "known", known, size)
    settings = DetectorSettings()
    database = f"sqlite:///{tmp / 'big.db'}"
    gallery, cold = folder_gallery(known, settings, database)
    _, warm = folder_gallery(known, settings, database)
    photos = warm.sync.seen
    rows = ["| gallery | photos | usable | people | seconds |", "|---|---|---|---|---|",
            f"| cold: encode every photo into an empty database (one process) | {cold.sync.seen} | "
            f"{len(gallery.names)} | {len(gallery.people)} | {cold.seconds:.1f} |",
            f"| warm: database, unchanged files not read, in process | {photos} | {len(gallery.names)} | "
            f"{len(gallery.people)} | {warm.seconds:.3f} |"]
    for workers in (1, 2):  # warm starts: the gallery database filled above, the folder unchanged
        started = time.perf_counter()
        with ServerProcess(known, tmp / f"big{workers}.log", "--workers", str(workers), "--db", database) as server:
            ready = time.perf_counter() - started
            assert answers_ping(server.address)
            loaded = re.search(r"gallery loaded: .* in ([\d.]+) s", server.log()).group(1)
        rows.append(f"| `server.py --workers {workers}` start until it answers | {photos} | "
                    f"{len(gallery.names)} | {len(gallery.people)} | {ready:.2f} (gallery {loaded}) |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="passes over the test photos (default: %(default)s)")
    parser.add_argument("--gallery-size", type=int, default=1000, help="photos in the big gallery (default: %(default)s)")
    args = parser.parse_args()
    probes = [images.read_image(p) for p in sorted((FACES / "test").glob("*.jpg"))]
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        known = tmp / "known"
        shutil.copytree(FACES / "known", known)
        print("\n".join(detector_throughput(known, probes, args.rounds, tmp)), end="\n\n")
        print("\n".join(throughput(known, probes, args.rounds, tmp)), end="\n\n")
        print("\n".join(wire_formats(known, tmp)), end="\n\n")
        print("\n".join(big_gallery(args.gallery_size, tmp)))


if __name__ == "__main__":
    main()
