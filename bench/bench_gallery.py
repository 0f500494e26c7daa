#!/usr/bin/env python3
"""The gallery database at scale: import, server start, memory, matching, recall and enrolment, 10^4 to 10^6 faces.

For each gallery size N and backend (SQLite, and PostgreSQL in a throwaway cluster from tests/postgres.py) it:

1. imports N synthetic encodings with `Database.import_vectors` (one transaction, tag IMPORTED): N/10 people
   "p000123", each a centre of norm about 1.4 (a common mean plus a personal offset, so that people are about
   0.9 apart, as different people are under dlib), and each photo the centre moved 0.2-0.4 in a random direction
   (dlib's same-person distances);
2. starts the real server (`python -m facewire.serve --known-faces EMPTY --db URL --workers W`) twice, timing each
   start until it answers ping: the first builds and saves the index (>= SAVED_INDEX_FROM faces), the second loads it;
3. sends a real one-face photo REQUESTS times and reads `timings_ms["match"]` per face, beside the same run's exact
   search (numpy float32 brute force over the same N vectors, one BLAS thread as a worker has, in this process);
4. reads each worker's /proc/PID/smaps_rollup after those requests: Rss, its file-backed part (Rss - Anonymous),
   private pages, and Pss (shared pages divided among their users), and the host total as the sum of Pss over every
   server process (each shared page counted once);
5. loads the index the workers use (the saved one, or the snapshot build below SAVED_INDEX_FROM) in this process and
   queries PROBES fresh perturbations of random people's centres: recall@1 is the share given the same nearest photo
   as exact numpy search (float32 shortlist of 8, re-ranked in float64);
6. enrols ENROLS real one-face photos (the shared gallery's, also flipped and scaled so that each is distinct) under
   new names through `Client.enroll`, and after each sends that photo until 2 x W consecutive replies name it
   (requests go round-robin over the workers, so W of them cover every worker).

Prints the CPU model, the load, one Markdown row per (N, backend) as it finishes, the targets met or missed, and the
total time.

    nice -n 10 .venv/bin/python bench/bench_gallery.py [--faces 10000 100000 1000000] [--backends sqlite postgresql]
                                                       [--workers 2]
"""

from __future__ import annotations

import os

SINGLE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
_saved_env = {key: os.environ.get(key) for key in SINGLE_THREAD}
os.environ.update(SINGLE_THREAD)  # numpy's BLAS in this process: one thread, as in a worker

import numpy as np  # noqa: E402

for _key, _value in _saved_env.items():  # the servers started below choose their own threads
    if _value is None:
        os.environ.pop(_key, None)
    else:
        os.environ[_key] = _value

import argparse  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Iterator  # noqa: E402

import cv2  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from facewire.client.client import Client, ServerError  # noqa: E402
from facewire.faces.index import FaceIndex  # noqa: E402
from facewire.faces.settings import DetectorSettings  # noqa: E402
from facewire.process import ServerProcess  # noqa: E402
from facewire.serve.forkserver import WORKER_NAME  # noqa: E402
from facewire.store.database import IMPORTED, open_database  # noqa: E402
from facewire.store.live import index_folder, latest_saved, save_index  # noqa: E402
from tests.postgres import Cluster, drop_postgres_database, fresh_postgres_database  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "faces"
MATCH_PHOTO = SHARED / "test" / "obama1.jpg"
ENROL_PHOTOS = SHARED / "known"
REQUESTS = 200
PROBES = 1_000
ENROLS = 20
DIM = 128
CENTRE_NORM = 1.4
PEOPLE_APART = 0.9
PHOTO_DISTANCE = (0.2, 0.4)
CHUNK = 100_000
MB = 1 << 20
READY_WITHIN = 150.0
"""A start not answering ping by then is recorded as never ready (a 10^6 first start took 30-40 s here), and the
row's server measurements are skipped."""
TARGETS = {  # faces -> what the issue asks at that size
    1_000_000: {"ready": 10.0, "match": 30.0, "recall": 0.999, "enrol": 300.0, "named": 1000.0, "pss": 700.0},
    100_000: {"ready": 2.0, "exact": True},
}


# --- the synthetic gallery -------------------------------------------------------------------------------

@dataclass
class Gallery:
    """N synthetic encodings (row i is photo i of the import, of person `owner[i]`) and the people's centres."""

    centres: np.ndarray
    owner: np.ndarray
    vectors: np.ndarray

    def names(self) -> Iterator[str]:
        return (person_name(o) for o in self.owner.tolist())


def person_name(number: int) -> str:
    return f"p{number:06d}"


def perturbed(rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    """Each centre moved by 0.2-0.4 (uniform) in a random direction, as float32."""
    direction = rng.normal(size=centres.shape)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    return (centres + direction * rng.uniform(*PHOTO_DISTANCE, size=(len(centres), 1))).astype(np.float32)


def synthetic(n: int, seed: int = 0) -> Gallery:
    """N/10 people, 10 photos each (interleaved), centres of norm ~1.4 about 0.9 apart."""
    rng = np.random.default_rng(seed)
    people = max(1, n // 10)
    offset = PEOPLE_APART / np.sqrt(2.0)  # two independent offsets of this norm are PEOPLE_APART apart
    mean = rng.normal(size=DIM)
    mean *= np.sqrt(CENTRE_NORM ** 2 - offset ** 2) / np.linalg.norm(mean)
    centres = mean + rng.normal(scale=offset / np.sqrt(DIM), size=(people, DIM))
    owner = np.arange(n) % people
    vectors = np.empty((n, DIM), np.float32)
    for start in range(0, n, CHUNK):
        vectors[start:start + CHUNK] = perturbed(rng, centres[owner[start:start + CHUNK]])
    return Gallery(centres, owner, vectors)


def probes(gallery: Gallery, count: int, seed: int = 1) -> np.ndarray:
    """Fresh perturbations of random people's centres."""
    rng = np.random.default_rng(seed)
    return perturbed(rng, gallery.centres[rng.integers(0, len(gallery.centres), count)])


# --- exact search in this process ---------------------------------------------------------------------------

def exact_nearest(vectors: np.ndarray, queries: np.ndarray, shortlist: int = 8, block: int = 32_768) -> np.ndarray:
    """Each query's nearest row: a float32 scan keeps `shortlist` candidates, re-ranked in float64."""
    norms = np.einsum("ij,ij->i", vectors, vectors)
    found = []
    for start in range(0, len(vectors), block):
        squared = norms[start:start + block] - 2.0 * (queries @ vectors[start:start + block].T)
        k = min(shortlist, squared.shape[1])
        found.append(np.argpartition(squared, k - 1, axis=1)[:, :k] + start)
    candidates = np.concatenate(found, axis=1)
    exact = np.linalg.norm(vectors[candidates].astype(np.float64) - queries[:, None, :].astype(np.float64), axis=2)
    return candidates[np.arange(len(queries)), exact.argmin(axis=1)]


def exact_ms(vectors: np.ndarray, queries: np.ndarray) -> list[float]:
    """Milliseconds per single-face exact search (float32 GEMV on one thread, then argmin)."""
    norms = np.einsum("ij,ij->i", vectors, vectors)
    times = []
    for query in queries:
        started = time.perf_counter()
        int(np.argmin(norms - 2.0 * (vectors @ query)))
        times.append((time.perf_counter() - started) * 1000)
    return times


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


# --- the database -------------------------------------------------------------------------------------------

def import_gallery(url: str, gallery: Gallery) -> tuple[float, int]:
    """Import every vector in one transaction and save the index, as `facewire-gallery import` does:
    (seconds, the first photo id; the ids are consecutive)."""
    with open_database(url) as db:
        started = time.perf_counter()
        count = db.import_vectors(zip(gallery.names(), gallery.vectors), "bench", IMPORTED)
        save_index(db, url, DetectorSettings())
        seconds = time.perf_counter() - started
        with db.transaction() as tx:
            first, last, photos = tx.one("SELECT min(id), max(id), count(*) FROM photos")
    if count != len(gallery.vectors) or photos != count or last - first + 1 != count:
        raise RuntimeError(f"imported {count} of {len(gallery.vectors)}: ids {first}..{last} for {photos} photos")
    return seconds, first


def workers_index(url: str) -> tuple[FaceIndex, str]:
    """The index the workers use: the saved one (memory-mapped), else built from the database's snapshot."""
    with open_database(url) as db:
        saved = latest_saved(index_folder(db, url))
        if saved is not None:
            return FaceIndex.load(saved[1]), "saved"
        snapshot = db.snapshot(IMPORTED)
    return FaceIndex.build(snapshot.photo_ids, snapshot.names, snapshot.vectors), "snapshot"


def recall_at_1(url: str, gallery: Gallery, first_id: int) -> tuple[float, str]:
    """The share of PROBES probes whose nearest photo in the workers' index is the exact nearest; and the index kind."""
    index, source = workers_index(url)
    queries = probes(gallery, PROBES)
    _, ids = index.search(queries, 1)
    truth = exact_nearest(gallery.vectors, queries) + first_id
    kind = "exact" if index.exact else "PQ+re-rank"
    return float(np.mean(ids[:, 0] == truth)), f"{kind} ({source})"


# --- the server ---------------------------------------------------------------------------------------------

def start_server(known: Path, log: Path, url: str, workers: int) -> tuple[ServerProcess, float]:
    """The server, started and answering ping, and the seconds that took."""
    started = time.perf_counter()
    server = ServerProcess(known, log, "--db", url, "--workers", str(workers), ready_within=READY_WITHIN)
    return server, time.perf_counter() - started


def logged_seconds(log: Path) -> str:
    """The server's own account of its start: prepare's seconds and each worker's gallery load."""
    text = log.read_text(errors="replace")
    prepared = re.findall(r"gallery .*?(index saved|no index saved), in ([0-9.]+) s", text)
    loaded = re.findall(r"gallery loaded: .*? in ([0-9.]+) s", text)
    return (f"prepare {', '.join(f'{s} s ({what})' for what, s in prepared)}; "
            f"worker loads {', '.join(f'{s} s' for s in loaded)}")


def comm(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/comm").read_bytes().strip()
    except OSError:
        return b""


def smaps(pid: int) -> dict[str, int]:
    """/proc/PID/smaps_rollup in bytes (empty for a process that is gone)."""
    fields = {}
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return {}
    for line in lines[1:]:
        key, value, *_ = line.split()
        fields[key.rstrip(":")] = int(value) * 1024
    return fields


@dataclass
class Memory:
    """Each worker's memory in MB, and the host total (Pss summed over every server process)."""

    rss: list[float] = field(default_factory=list)
    file: list[float] = field(default_factory=list)
    private: list[float] = field(default_factory=list)
    pss: list[float] = field(default_factory=list)
    host: float = 0.0


def memory(server: ServerProcess) -> Memory:
    """Read smaps_rollup of every worker (comm facewire-worker) and of every process of the server."""
    found = Memory()
    for pid in server.processes():
        rollup = smaps(pid)
        found.host += rollup.get("Pss", 0) / MB
        if comm(pid) == WORKER_NAME and rollup:
            found.rss.append(rollup["Rss"] / MB)
            found.file.append((rollup["Rss"] - rollup["Anonymous"]) / MB)
            found.private.append((rollup["Private_Clean"] + rollup["Private_Dirty"]) / MB)
            found.pss.append(rollup["Pss"] / MB)
    return found


def match_ms(client: Client, image: np.ndarray, count: int) -> list[float]:
    """`timings_ms["match"]` per face over `count` recognitions of `image`."""
    times = []
    for _ in range(count):
        result = client.recognize(image, annotate=False)
        if not result.faces:
            raise RuntimeError(f"{MATCH_PHOTO}: no face found")
        times.append(result.timings_ms["match"] / len(result.faces))
    return times


def enrol_images() -> Iterator[np.ndarray]:
    """The shared gallery's photos, then flipped, scaled by 0.75, and both: each a distinct encoding."""
    photos = [cv2.imread(str(path)) for path in sorted(ENROL_PHOTOS.glob("*/*")) if path.is_file()]
    for variant in (lambda i: i, lambda i: cv2.flip(i, 1), lambda i: cv2.resize(i, None, fx=0.75, fy=0.75),
                    lambda i: cv2.flip(cv2.resize(i, None, fx=0.75, fy=0.75), 1)):
        for photo in photos:
            yield np.ascontiguousarray(variant(photo))


@dataclass
class Enrolment:
    """Per enrolment, in ms: its latency; from its reply until 2 x workers consecutive requests named the new person
    (`named`), and until the first reply that named it (`first`); and each of those requests' round trip."""

    enrol: list[float] = field(default_factory=list)
    named: list[float] = field(default_factory=list)
    first: list[float] = field(default_factory=list)
    request: list[float] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)
    """How many batches each enrolment took until a whole batch named it (1: the first batch after the reply)."""


def until_named(client: Client, image: np.ndarray, name: str, workers: int, enrolled: float,
                found: Enrolment) -> None:
    """Send `image` in batches of 2 x workers, all in flight at once (the broker deals them round-robin, so each
    worker gets two), until a whole batch names `name`; record when that batch ended and when a reply first named it."""
    run, first = 2 * workers, None
    for batch in range(1, 51):
        sent, named = time.perf_counter(), 0
        for result in client.recognize_many([image] * run, in_flight=run, annotate=False):
            now = time.perf_counter()
            if isinstance(result, Exception):
                raise result
            named += result.names == [name]
            first = now if first is None and result.names == [name] else first
        found.request.append((now - sent) * 1000 / run)
        if named == run:
            found.named.append((now - enrolled) * 1000)
            found.first.append((first - enrolled) * 1000)
            found.batches.append(batch)
            return
    raise RuntimeError(f"{name} not named by a whole batch of {run} requests in 50 batches")


def enrolments(client: Client, workers: int) -> Enrolment:
    """ENROLS enrolments of distinct one-face photos under new names, each followed by `until_named`."""
    found, images = Enrolment(), enrol_images()
    while len(found.enrol) < ENROLS:
        image, name = next(images), f"enrolled{len(found.enrol):03d}"
        started = time.perf_counter()
        try:
            client.enroll(name, image)
        except ServerError as exc:  # a variant where detection finds no face or two: take the next
            print(f"  (skipped a photo variant: {exc})", file=sys.stderr)
            continue
        enrolled = time.perf_counter()
        found.enrol.append((enrolled - started) * 1000)
        until_named(client, image, name, workers, enrolled, found)
    return found


# --- one row --------------------------------------------------------------------------------------------------

@dataclass
class Row:
    """Everything measured for one (N, backend)."""

    faces: int
    backend: str
    import_s: float = 0.0
    ready: list[float] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    index: str = ""
    recall: float = 0.0
    memory: Memory = field(default_factory=Memory)
    match: list[float] = field(default_factory=list)
    exact: list[float] = field(default_factory=list)
    enrol: Enrolment = field(default_factory=Enrolment)
    seconds: float = 0.0


def measure(row: Row, url: str, gallery: Gallery, workers: int, folder: Path) -> Row:
    """Import, first and second start, requests, memory, recall and enrolments against the database at `url`."""
    began = time.perf_counter()
    row.import_s, first_id = import_gallery(url, gallery)
    note(f"imported {row.faces} faces into {row.backend} in {row.import_s:.1f} s")
    (folder / "known").mkdir()
    server = starts(row, folder, url, workers)
    if server is None:
        row.recall, row.index = recall_at_1(url, gallery, first_id)
    else:
        try:
            serve_requests(row, server, url, gallery, first_id, workers)
        finally:
            server.stop()
    row.seconds = time.perf_counter() - began
    return row


def starts(row: Row, folder: Path, url: str, workers: int) -> ServerProcess | None:
    """The first start (stopped again) and the second, each timed into `row`; the running second server, or None
    when a start did not answer ping within READY_WITHIN seconds (it is stopped, and `row.ready` gets inf)."""
    for start in (1, 2):
        log = folder / f"server{start}.log"
        try:
            server, seconds = start_server(folder / "known", log, url, workers)
        except RuntimeError:
            row.ready.append(float("inf"))
            row.started.append(f"NOT READY within {READY_WITHIN:.0f} s; {logged_seconds(log)}")
            note(f"start {start}: {row.started[-1]}")
            return None
        row.ready.append(seconds)
        row.started.append(logged_seconds(log))
        note(f"start {start}: {seconds:.1f} s: {row.started[-1]}")
        if start == 1:
            server.stop()
    return server


def serve_requests(row: Row, server: ServerProcess, url: str, gallery: Gallery, first_id: int, workers: int) -> None:
    """Match times, memory after them, the exact baseline, recall, and enrolments, into `row`."""
    with Client(server.address, timeout=120) as client:
        row.match = match_ms(client, cv2.imread(str(MATCH_PHOTO)), REQUESTS)
        row.memory = memory(server)
        row.exact = exact_ms(gallery.vectors, probes(gallery, REQUESTS, seed=2))
        row.recall, row.index = recall_at_1(url, gallery, first_id)
        note(f"match p50 {percentile(row.match, 50):.2f} ms, recall {row.recall:.4f} ({row.index})")
        row.enrol = enrolments(client, workers)
        note(f"enrol p50 {percentile(row.enrol.enrol, 50):.0f} ms; a recognition of an enrolled photo took "
             f"{pair(row.enrol.request, 0)} ms (p50 / p99, per request of a batch)")


def empty_ready(workers: int) -> float:
    """Seconds until a server on an empty SQLite gallery answers ping: what every start costs whatever the gallery."""
    with tempfile.TemporaryDirectory(prefix="bench-gallery-") as folder:
        (Path(folder) / "known").mkdir()
        server, seconds = start_server(Path(folder) / "known", Path(folder) / "server.log",
                                       f"sqlite:///{folder}/gallery.db", workers)
        server.stop()
    return seconds


def sqlite_row(faces: int, gallery: Gallery, workers: int) -> Row:
    """A row on a new SQLite file in a temporary folder (its saved index beside it)."""
    with tempfile.TemporaryDirectory(prefix="bench-gallery-") as folder:
        return measure(Row(faces, "sqlite"), f"sqlite:///{folder}/gallery.db", gallery, workers, Path(folder))


def postgres_row(faces: int, gallery: Gallery, workers: int, admin_url: str) -> Row:
    """A row on a fresh database of the cluster; the database, and the index saved in the user's cache, go after."""
    name, url = fresh_postgres_database(admin_url)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-gallery-") as folder:
            return measure(Row(faces, "postgresql"), url, gallery, workers, Path(folder))
    finally:
        with open_database(url) as db:
            shutil.rmtree(index_folder(db, url), ignore_errors=True)
        drop_postgres_database(admin_url, name)


# --- printing -------------------------------------------------------------------------------------------------

HEADER = ("| faces | backend | import s | ready 1st s | ready 2nd s | index | recall@1 | match ms/face p50 / p99 "
          "| exact numpy ms p50 / p99 | worker RSS MB | of which file-backed | worker private MB | worker PSS MB "
          "| host PSS MB | enrol ms p50 / p99 | named by all ms p50 / p99 (first named) | first batch named by all "
          "| row s |")


def note(text: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def verdict(ok: bool) -> str:
    return " met" if ok else " **missed**"


def judged(value: str, target: dict, key: str, ok: bool) -> str:
    return value + (verdict(ok) if key in target else "")


def listed(values: list[float]) -> str:
    return ", ".join(f"{v:.0f}" for v in values)


def pair(values: list[float], digits: int = 1) -> str:
    return f"{percentile(values, 50):.{digits}f} / {percentile(values, 99):.{digits}f}"


def table_row(row: Row) -> str:
    """One Markdown row, each cell with a target marked met or missed."""
    t = TARGETS.get(row.faces, {})
    if not row.match:
        return unready_row(row, t)
    p99 = {name: percentile(values, 99) for name, values in
           (("match", row.match), ("enrol", row.enrol.enrol), ("named", row.enrol.named))}
    cells = [f"{row.faces:,}", row.backend, f"{row.import_s:.1f}",
             *ready_cells(row, t),
             judged(row.index, t, "exact", row.index.startswith("exact")),
             judged(f"{row.recall:.2%}", t, "recall", row.recall >= t.get("recall", 0)),
             judged(pair(row.match, 2), t, "match", p99["match"] <= t.get("match", 0)),
             pair(row.exact, 2), listed(row.memory.rss), listed(row.memory.file), listed(row.memory.private),
             judged(listed(row.memory.pss), t, "pss", max(row.memory.pss, default=0) <= t.get("pss", 0)),
             f"{row.memory.host:.0f}",
             judged(pair(row.enrol.enrol, 0), t, "enrol", p99["enrol"] <= t.get("enrol", 0)),
             judged(pair(row.enrol.named, 0), t, "named", p99["named"] <= t.get("named", 0))
             + f" ({pair(row.enrol.first, 0)})",
             f"{sum(batch == 1 for batch in row.enrol.batches)} of {len(row.enrol.batches)}", f"{row.seconds:.0f}"]
    return "| " + " | ".join(cells) + " |"


def ready_cells(row: Row, t: dict) -> list[str]:
    """The two start times; a start that never answered ping, and one never tried after it, said so."""
    cells = [judged("never" if s == float("inf") else f"{s:.2f}", t, "ready", s <= t.get("ready", 0))
             for s in row.ready]
    return cells + ["not tried"] * (2 - len(cells))


def unready_row(row: Row, t: dict) -> str:
    """A row whose server did not answer ping in time: import, starts and recall only."""
    skipped = f"not measured: the server was not ready within {READY_WITHIN:.0f} s"
    cells = [f"{row.faces:,}", row.backend, f"{row.import_s:.1f}", *ready_cells(row, t),
             judged(row.index, t, "exact", row.index.startswith("exact")),
             judged(f"{row.recall:.2%}", t, "recall", row.recall >= t.get("recall", 0)),
             skipped, *[""] * 9, f"{row.seconds:.0f}"]
    return "| " + " | ".join(cells) + " |"


def machine() -> str:
    """The CPU model (lscpu), the core count and the load when the run began."""
    model = next((line.split(":", 1)[1].strip() for line in subprocess.run(
        ["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")), "unknown")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{model}, {os.cpu_count()} cores, SHARED with other engineers' work (load average at start: {load}); "
            f"nice {os.nice(0)}")


def legend(workers: int) -> str:
    return "\n".join([
        f"Targets (from the issue), {workers} workers: at 10^6 faces ready <= 10 s, match <= 30 ms/face (p99), "
        "recall@1 >= 99.9%, enrol <= 300 ms (p99), named by every worker <= 1 s (p99), PSS <= 700 MB per worker "
        "(shared memory-mapped pages count once); at 10^5 ready <= 2 s and exact search.",
        "Import: the vectors in one transaction, then the index saved (as `facewire-gallery import` does). "
        "Ready: from starting `python -m facewire.serve` until it answers ping (1st: after the import; "
        "2nd: a restart). Memory after the match requests, from /proc/PID/smaps_rollup: file-backed = Rss - Anonymous, "
        "private = Private_Clean + Private_Dirty; host = Pss summed over every server process (each shared page once).",
        f"Named by all: from the enrol reply until {2 * workers} consecutive requests of its photo, sent all at once "
        f"(round-robin: two per worker), all named the new person; in brackets, until the first reply named it. Each "
        "request recognises the photo again, so this is at least two recognitions' time.",
        "Exact numpy: one query, float32 matrix-vector product over the same N vectors on one thread, in the bench "
        "process.",
    ])


# --- main -----------------------------------------------------------------------------------------------------

def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--backends", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"])
    parser.add_argument("--workers", type=int, default=2)
    return parser.parse_args()


def run(args: argparse.Namespace, admin_url: str | None) -> list[Row]:
    """Every (N, backend) row, each printed as soon as it is measured."""
    rows = []
    for faces in args.faces:
        started = time.perf_counter()
        gallery = synthetic(faces)
        note(f"{faces} synthetic faces made in {time.perf_counter() - started:.1f} s")
        for backend in args.backends:
            row = (sqlite_row(faces, gallery, args.workers) if backend == "sqlite"
                   else postgres_row(faces, gallery, args.workers, admin_url))
            rows.append(row)
            print(table_row(row), flush=True)
            for what, account in zip(("1st", "2nd"), row.started):  # again, beside the row
                note(f"{faces} {backend} {what} start, the server's log: {account}")
    return rows


def main() -> None:
    args = parse_args()
    began = time.perf_counter()
    print(f"Machine: {machine()}\n")
    cluster = Cluster() if "postgresql" in args.backends else None
    try:
        admin_url = cluster.start() if cluster else None
        print(f"An empty gallery's server (SQLite) answers ping {empty_ready(args.workers):.2f} s after it starts.\n")
        print(HEADER)
        print("|" + "---|" * (HEADER.count("|") - 1), flush=True)
        run(args, admin_url)
    finally:
        if cluster:
            cluster.stop()
    print(f"\n{legend(args.workers)}\n\nWhole run: {time.perf_counter() - began:.0f} s "
          f"({', '.join(map(str, args.faces))} faces on {', '.join(args.backends)}, {args.workers} workers)")


if __name__ == "__main__":
    main()
