#!/usr/bin/env python3
"""The HTTP gateway's overhead: POST /v1/recognize against the ZeroMQ client, on the same server, in one run.

Run: .venv/bin/python bench/bench_http.py [--clients 8] [--requests 40] [--rounds 2] [--workers 2]

Both paths start from the same JPEG bytes (the ten photos of ../shared/data/faces/test, in turn) and
end with the faces, no annotated image: over ZeroMQ, each of --clients threads has its own Client and
decodes the file itself (as client.py does); over HTTP, each thread has its own connection and uploads
the file to a gateway with --connections = --clients. The two alternate for --rounds rounds of
--requests requests per thread. Prints requests per second, p50 and p95 latency, and the gateway's
overhead (target: under 10%) as a Markdown table, with the CPU it ran on.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from facewire.client.client import Client  # noqa: E402
from facewire.faces import images  # noqa: E402
from facewire.process import GatewayProcess, ServerProcess  # noqa: E402

FACES = ROOT.parent / "shared" / "data" / "faces"


def cpu_model() -> str:
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def run_clients(count: int, requests: int, make: Callable[[], Callable[[bytes], int]], photos: list[bytes]
                ) -> tuple[float, list[float]]:
    """`count` threads, each sending `requests` photos in turn with its own sender; (seconds, latencies)."""
    latencies: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(count + 1)
    failures: list[BaseException] = []

    def client(index: int) -> None:
        send = make()
        start.wait()
        try:
            for n in range(requests):
                began = time.perf_counter()
                faces = send(photos[(index + n) % len(photos)])
                took = time.perf_counter() - began
                assert faces > 0, "a photo with no face found"
                with lock:
                    latencies.append(took)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return time.perf_counter() - began, latencies


def zeromq_sender(address: str) -> Callable[[], Callable[[bytes], int]]:
    def make() -> Callable[[bytes], int]:
        client = Client(address, timeout=120, retries=0)
        return lambda data: len(client.recognize(images.decode_image(data), annotate=False).faces)
    return make


def http_sender(url: str) -> Callable[[], Callable[[bytes], int]]:
    def make() -> Callable[[bytes], int]:
        session = httpx.Client(base_url=url, timeout=120)

        def send(data: bytes) -> int:
            response = session.post("/v1/recognize", files={"image": ("photo.jpg", data, "image/jpeg")})
            response.raise_for_status()
            return len(response.json()["faces"])
        return send
    return make


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=40, help="per client and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    photos = [path.read_bytes() for path in sorted((FACES / "test").glob("*.jpg"))]
    totals: dict[str, float] = {"ZeroMQ": 0.0, "HTTP": 0.0}
    latencies: dict[str, list[float]] = {"ZeroMQ": [], "HTTP": []}
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp, \
            ServerProcess(FACES / "known", Path(tmp) / "server.log", "--workers", str(args.workers),
                          "--db", f"sqlite:///{Path(tmp) / 'cache.db'}") as server, \
            GatewayProcess(server.address, Path(tmp) / "gateway.log", "--connections", str(args.clients),
                           "--log-level", "WARNING") as gateway:
        senders = {"ZeroMQ": zeromq_sender(server.address), "HTTP": http_sender(gateway.url)}
        for name, make in senders.items():  # warm up: connections, caches, first-call costs
            run_clients(args.clients, 1, make, photos)
        for round_ in range(args.rounds):
            for name, make in senders.items():
                seconds, taken = run_clients(args.clients, args.requests, make, photos)
                totals[name] += seconds
                latencies[name] += taken
                print(f"round {round_ + 1}, {name}: {len(taken)} requests in {seconds:.1f} s", file=sys.stderr)
    print(f"CPU: {cpu_model()}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores; "
          f"server with {args.workers} workers; {args.clients} concurrent clients; "
          f"the {len(photos)} shared test photos in turn\n")
    print("| path | requests | seconds | requests/s | p50 ms | p95 ms | vs ZeroMQ |")
    print("|---|---|---|---|---|---|---|")
    rate = {name: len(latencies[name]) / totals[name] for name in totals}
    for name in totals:
        taken = latencies[name]
        print(f"| {name} | {len(taken)} | {totals[name]:.1f} | {rate[name]:.2f} | "
              f"{statistics.median(taken) * 1000:.0f} | {percentile(taken, 0.95) * 1000:.0f} | "
              f"{rate[name] / rate['ZeroMQ']:.3f}x |")
    overhead = 1 - rate["HTTP"] / rate["ZeroMQ"]
    print(f"\nGateway overhead: {overhead:.1%} fewer requests per second than ZeroMQ (target: under 10%).")


if __name__ == "__main__":
    main()
