"""A gallery of face encodings searched by Euclidean distance: exact up to EXACT_LIMIT faces, approximate beyond.

A `FaceIndex` has a *base*, built once, saved to a folder and memory-mapped back (so that a host's worker
processes share its pages), and takes changes cheaply: added faces go to a small exact *delta* searched beside
the base, and removed faces of the base become tombstones that no search returns. `save` merges both into a new
base. Over EXACT_LIMIT faces the base is searched in two steps: a faiss product-quantizer "fast scan" of every face
(16 bytes each) shortlists candidates, and the float32 matrix re-ranks them exactly. bench/bench_index.py measured
this against IVF-Flat, HNSW in faiss and HNSW in usearch. Photos are named by the caller's int64 ids: this module
knows nothing of where they come from.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    import faiss  # imported where used: exact galleries, and every importer of matching.py, never load faiss

DIM = 128

EXACT_LIMIT = 100_000
"""Largest base searched exactly. A float32 scan is bound by memory bandwidth: on this 2-core Xeon, 10^6 faces take
about 35 ms per face when the machine is quiet, over the 30 ms budget, and 10^5 a tenth of that. Busy (load average
4-5 from other work), bench/bench_index.py measured 84 ms p50 at 10^6 and 29 ms p50 / 74 ms p99 at 10^5 (a bare
numpy matrix-vector product of 10^5 faces: 23 ms), against 0.4 ms p50 for the approximate search at 10^5 with the
same nearest photo for every probe. Lower the limit where the hosts are that busy."""

PQ = "PQ32x4fs"
"""The faiss index that shortlists: 32 sub-quantizers of 4 bits (16 bytes a face), scanned with SIMD (fast scan)."""

SHORTLIST = 64
"""Candidates per query re-ranked exactly, beyond the k asked for (bench/bench_index.py: the exact nearest photo was
in the first 16 for every probe at 10^6 clustered faces)."""

SMALLEST_APPROXIMATE = 256
"""Fewer faces are searched exactly whatever the limit: the quantizer needs a few hundred to train on."""

TRAIN_SAMPLE = 65_536
"""Faces the product quantizer is trained on (16 centroids per sub-quantizer need few)."""

CHUNK_BYTES = 16 << 20
"""Size of the distance block an exact scan holds at once (queries x gallery rows, float32)."""

FORMAT = "facewire-face-index"
VERSION = 1
HEADER = "header.json"
ARRAYS = {"ids": np.int64, "labels": np.int32, "vectors": np.float32, "norms": np.float32}
ANN_FILE = "base.faiss"


class IndexFolderError(ValueError):
    """A saved index folder that cannot be used: missing, corrupt or foreign files."""


@dataclass
class _Rows:
    """Faces as parallel arrays: photo ids, name codes, encodings and their squared norms."""

    ids: np.ndarray
    labels: np.ndarray
    vectors: np.ndarray
    norms: np.ndarray


class _Delta:
    """Faces added since the base was built: a small exact gallery that grows by doubling and removes by swapping."""

    def __init__(self) -> None:
        self.rows = _Rows(np.empty(0, np.int64), np.empty(0, np.int32), np.empty((0, DIM), np.float32),
                          np.empty(0, np.float32))
        self.count = 0
        self.slots: dict[int, int] = {}

    def view(self) -> _Rows:
        """The live rows (views, valid until the next change)."""
        r, n = self.rows, self.count
        return _Rows(r.ids[:n], r.labels[:n], r.vectors[:n], r.norms[:n])

    def add(self, ids: np.ndarray, labels: np.ndarray, vectors: np.ndarray) -> None:
        """Append faces whose ids are not here yet."""
        end = self.count + len(ids)
        if end > len(self.rows.ids):
            self._grow(max(end, 2 * len(self.rows.ids), 16))
        r = self.rows
        r.ids[self.count:end], r.labels[self.count:end], r.vectors[self.count:end] = ids, labels, vectors
        r.norms[self.count:end] = np.einsum("ij,ij->i", vectors, vectors)
        self.slots.update((int(i), self.count + j) for j, i in enumerate(ids))
        self.count = end

    def remove(self, photo_id: int) -> None:
        """Drop one face by moving the last row into its slot."""
        slot, last = self.slots.pop(photo_id), self.count - 1
        if slot != last:
            for array in (self.rows.ids, self.rows.labels, self.rows.vectors, self.rows.norms):
                array[slot] = array[last]
            self.slots[int(self.rows.ids[slot])] = slot
        self.count = last

    def _grow(self, capacity: int) -> None:
        r = self.rows
        self.rows = _Rows(*(np.resize(a, (capacity,) + a.shape[1:]) for a in (r.ids, r.labels, r.vectors, r.norms)))


class FaceIndex:
    """Photo ids, their names and 128-d encodings, searched for the k nearest by Euclidean distance.

    Build one with `build` or `load`; change it with `add` and `remove` (cheap at any size); `search` it;
    `save` it to a new folder.
    """

    exact_limit: int = EXACT_LIMIT
    """The size above which `build` (and `save`, merging changes) makes an approximate base."""

    def __init__(self, base: _Rows, names: list[str], ann: faiss.Index | None, sequence: str | int | None) -> None:
        self._base = base
        self._names = names
        self._codes = {name: code for code, name in enumerate(names)}
        self._ann = ann
        self._alive = np.ones(len(base.ids), bool)
        self._dead = 0
        self._delta = _Delta()
        self.sequence = sequence
        """What the caller said this content is (a change-log sequence or a checksum), kept by save and load."""

    # --- building -------------------------------------------------------------------------------------

    @classmethod
    def build(cls, ids: np.ndarray, names: Sequence[str], vectors: np.ndarray, *, exact_limit: int = EXACT_LIMIT,
              threads: int = 1, sequence: str | int | None = None) -> FaceIndex:
        """An index of `vectors[i]` (float, (N, 128)), photo `ids[i]` (unique int64) of person `names[i]`.

        Above `exact_limit` faces (and SMALLEST_APPROXIMATE) it trains the shortlisting index with `threads`
        OpenMP threads. One is the default: the work is light (10^6 faces in about 10 s), and on a busy machine
        more threads wait on each other (10^5 faces: 2.2 s with one thread, 10.6 s with two, on 2 shared cores).
        """
        ids, vectors = _check_faces(ids, names, vectors)
        if len(np.unique(ids)) != len(ids):
            raise ValueError("photo ids must be unique")
        order = np.argsort(ids, kind="stable")
        distinct = sorted(set(names))
        codes = {name: code for code, name in enumerate(distinct)}
        labels = np.array([codes[names[i]] for i in order], np.int32)
        vectors = vectors[order]
        rows = _Rows(ids[order], labels, vectors, np.einsum("ij,ij->i", vectors, vectors))
        approximate = len(ids) > max(exact_limit, SMALLEST_APPROXIMATE)
        ann = _train_shortlist(vectors, threads) if approximate else None
        index = cls(rows, distinct, ann, sequence)
        index.exact_limit = exact_limit
        return index

    # --- changes --------------------------------------------------------------------------------------

    def add(self, ids: np.ndarray, names: Sequence[str], vectors: np.ndarray) -> None:
        """Add faces, searchable at once. An id may have been removed before, but must not be present now."""
        ids, vectors = _check_faces(ids, names, vectors)
        clashes = [int(i) for i in ids if self._find(int(i)) is not None]
        if clashes or len(np.unique(ids)) != len(ids):
            raise ValueError(f"photo ids already present or repeated: {clashes or sorted(ids.tolist())}")
        for name in names:
            if name not in self._codes:
                self._codes[name] = len(self._names)
                self._names.append(name)
        self._delta.add(ids, np.array([self._codes[n] for n in names], np.int32), vectors)

    def remove(self, ids: Sequence[int] | np.ndarray) -> None:
        """Remove faces by photo id; KeyError names any id that is not present (nothing is removed then)."""
        ids = [int(i) for i in np.asarray(ids, np.int64).reshape(-1)]
        missing = [i for i in ids if self._find(i) is None]
        if missing or len(set(ids)) != len(ids):
            raise KeyError(f"photo ids not present or repeated: {missing or sorted(ids)}")
        for photo_id in ids:
            where, position = self._find(photo_id)
            if where == "delta":
                self._delta.remove(photo_id)
            else:
                self._alive[position] = False
                self._dead += 1

    def _find(self, photo_id: int) -> tuple[str, int] | None:
        """("delta", slot) or ("base", row) of a present photo, None for an absent or removed one."""
        if photo_id in self._delta.slots:
            return "delta", self._delta.slots[photo_id]
        row = int(np.searchsorted(self._base.ids, photo_id))
        if row < len(self._base.ids) and self._base.ids[row] == photo_id and self._alive[row]:
            return "base", row
        return None

    # --- queries --------------------------------------------------------------------------------------

    def __len__(self) -> int:
        """The number of faces present."""
        return len(self._base.ids) - self._dead + self._delta.count

    @property
    def exact(self) -> bool:
        """True when the base is searched exactly (the delta always is)."""
        return self._ann is None

    @property
    def pending(self) -> int:
        """Changes since the base was built (delta faces and tombstones): `save` merges them into a new base."""
        return self._delta.count + self._dead

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest faces of each query (float, (M, 128)): Euclidean distances (M, k) and photo ids (M, k).

        Each row is sorted by distance, then by id. With fewer than k faces present, a row ends with
        distance inf and id -1. Over the exact limit, the nearest photo is the exact one for >= 99.9% of queries
        (bench/bench_index.py), and so are the photos near it; far neighbours (other people, all about equally
        far) may be missing or out of order.
        """
        queries = np.ascontiguousarray(queries, np.float32)
        if queries.ndim != 2 or queries.shape[1] != DIM or k < 1:
            raise ValueError(f"queries must be (M, {DIM}) and k >= 1, got {queries.shape} and k={k}")
        base_query, base_sq, base_rows = self._search_base(queries, k)
        delta = self._delta.view()
        delta_query, delta_sq, delta_slots = _exact(queries, delta, k, None)
        return _top_k(np.concatenate([base_query, delta_query]), np.concatenate([base_sq, delta_sq]),
                      np.concatenate([self._base.ids[base_rows], delta.ids[delta_slots]]), len(queries), k)

    def _search_base(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(query, squared distance, row) of the base's k nearest live rows per query (more on exact ties)."""
        if self._ann is None:
            return _exact(queries, self._base, k, self._alive if self._dead else None)
        _, rows = self._ann.search(queries, min(len(self._base.ids), k + SHORTLIST + self._dead))
        query, column = np.nonzero(rows >= 0)
        rows = rows[query, column]
        keep = self._alive[rows]
        query, rows = query[keep], rows[keep]
        vectors = self._base.vectors[rows]
        squared = self._base.norms[rows] + np.einsum("ij,ij->i", queries[query], queries[query] - 2.0 * vectors)
        return query, squared, rows

    def vectors_of(self, name: str) -> np.ndarray:
        """The encodings (float32, (n, 128)) of the faces of `name` present (none for a name not here)."""
        code = self._codes.get(name)
        if code is None:
            return np.empty((0, DIM), np.float32)
        delta = self._delta.view()
        return np.concatenate([self._base.vectors[(self._base.labels == code) & self._alive],
                               delta.vectors[delta.labels == code]])

    def names_of(self, ids: np.ndarray) -> list[list[str]]:
        """The name of each photo id in a (M, k) result of `search`; "" for the padding id -1."""
        return [[self.name_of(int(i)) if i >= 0 else "" for i in row] for row in np.asarray(ids)]

    def name_of(self, photo_id: int) -> str:
        """The name of a present photo (KeyError if absent)."""
        found = self._find(photo_id)
        if found is None:
            raise KeyError(photo_id)
        where, position = found
        labels = self._delta.rows.labels if where == "delta" else self._base.labels
        return self._names[labels[position]]

    # --- persistence ----------------------------------------------------------------------------------

    def save(self, folder: str | os.PathLike, sequence: str | int | None = None) -> None:
        """Write the faces present to a new `folder` (written beside it, then renamed into place).

        Pending changes are first merged into a new base, which above the exact limit trains a new shortlist.
        `sequence` (default: this index's) is stored in the header for the caller.
        """
        folder = Path(folder)
        if folder.exists():
            raise FileExistsError(f"{folder}: already exists (save each version to a new folder)")
        index = self._merged() if self.pending else self
        temporary = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            index._write(temporary, self.sequence if sequence is None else sequence)
            os.rename(temporary, folder)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise

    def _merged(self) -> FaceIndex:
        """A fresh index of the faces present, with the exact limit this one was built under."""
        alive, delta = self._alive, self._delta.view()
        ids = np.concatenate([self._base.ids[alive], delta.ids])
        labels = np.concatenate([self._base.labels[alive], delta.labels])
        vectors = np.concatenate([self._base.vectors[alive], delta.vectors])
        return FaceIndex.build(ids, [self._names[c] for c in labels], vectors, exact_limit=self.exact_limit,
                               sequence=self.sequence)

    def _write(self, folder: Path, sequence: str | int | None) -> None:
        base = self._base
        for name in ARRAYS:
            np.save(folder / f"{name}.npy", getattr(base, name), allow_pickle=False)
        (folder / "names.json").write_text(json.dumps(self._names, ensure_ascii=False), encoding="utf-8")
        if self._ann is not None:
            _write_ann(self._ann, folder / ANN_FILE)
        files = {path.name: path.stat().st_size for path in sorted(folder.iterdir())}
        header = {"format": FORMAT, "version": VERSION, "count": len(base.ids), "dim": DIM, "sequence": sequence,
                  "library": _library(self._ann), "index": PQ if self._ann else "exact", "files": files}
        (folder / HEADER).write_text(json.dumps(header, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, folder: str | os.PathLike) -> FaceIndex:
        """The index saved in `folder`, its arrays memory-mapped read-only (so shared between processes).

        The shortlist's codes (16 bytes a face) are read into memory: faiss maps only flat and IVF indexes.

        Raises IndexFolderError, naming the path, for a missing, corrupt or foreign folder.
        """
        folder = Path(folder)
        header = _read_header(folder)
        rows = _Rows(*(_load_array(folder / f"{name}.npy", dtype, header["count"]) for name, dtype in ARRAYS.items()))
        names = _read_json(folder / "names.json")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or (
                len(rows.labels) and not 0 <= rows.labels.min() <= rows.labels.max() < len(names)):
            raise IndexFolderError(f"{folder / 'names.json'}: does not name every face's label")
        ann = _read_ann(folder / ANN_FILE, header["count"]) if header["index"] != "exact" else None
        return cls(rows, names, ann, header["sequence"])


# --- exact search --------------------------------------------------------------------------------------

def _exact(queries: np.ndarray, rows: _Rows, k: int, alive: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """(query, squared distance, row) of each query's k nearest rows, scanned in blocks of CHUNK_BYTES.

    Squared distances are ||q||^2 + ||x||^2 - 2 q.x in float32. All rows tied with a block's k-th come along, so
    that `_top_k` breaks ties by id. `alive` (bool per row) hides removed rows.
    """
    squared_queries = np.einsum("ij,ij->i", queries, queries)[:, None]
    step = max(k, CHUNK_BYTES // (4 * max(1, len(queries))))
    found = []
    for start in range(0, len(rows.ids), step):
        block = queries @ rows.vectors[start:start + step].T
        block *= -2.0
        block += rows.norms[start:start + step]
        block += squared_queries
        if alive is not None:
            block[:, ~alive[start:start + step]] = np.inf
        kth = np.partition(block, min(k, block.shape[1]) - 1, axis=1)[:, min(k, block.shape[1]) - 1, None]
        query, column = np.nonzero((block <= kth) & (block < np.inf))
        found.append((query, block[query, column], column + start))
    if not found:
        return np.empty(0, np.intp), np.empty(0, np.float32), np.empty(0, np.intp)
    return tuple(np.concatenate(parts) for parts in zip(*found))


def _top_k(query: np.ndarray, squared: np.ndarray, ids: np.ndarray, count: int, k: int) -> tuple[np.ndarray, ...]:
    """Candidates (query number, squared distance, id) -> (count, k) distances and ids, by distance then id."""
    order = np.lexsort((ids, squared, query))
    query, squared, ids = query[order], squared[order], ids[order]
    rank = np.arange(len(query)) - np.searchsorted(query, query)
    keep = rank < k
    distances = np.full((count, k), np.inf, np.float32)
    found = np.full((count, k), -1, np.int64)
    distances[query[keep], rank[keep]] = np.sqrt(np.maximum(squared[keep], 0.0))
    found[query[keep], rank[keep]] = ids[keep]
    return distances, found


# --- the approximate base ------------------------------------------------------------------------------

def _train_shortlist(vectors: np.ndarray, threads: int) -> faiss.Index:
    """The PQ fast-scan index of `vectors` (its ids are row numbers), trained on a sample with `threads`."""
    import faiss

    ann = faiss.index_factory(DIM, PQ)
    sample = np.random.default_rng(0).choice(len(vectors), min(len(vectors), TRAIN_SAMPLE), replace=False)
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        ann.train(vectors[np.sort(sample)])
        ann.add(vectors)
    finally:
        faiss.omp_set_num_threads(before)
    return ann


def _library(ann: faiss.Index | None) -> str:
    """The library (and version) that searches the base."""
    if ann is None:
        return f"numpy {np.__version__}"
    import faiss

    return f"faiss-cpu {faiss.__version__}"


def _write_ann(ann: faiss.Index, path: Path) -> None:
    import faiss

    faiss.write_index(ann, str(path))


def _read_ann(path: Path, count: int) -> faiss.Index:
    """The shortlisting index at `path`, checked against the header's count."""
    import faiss

    try:
        ann = faiss.read_index(str(path), faiss.IO_FLAG_READ_ONLY)
    except RuntimeError as error:
        raise IndexFolderError(f"{path}: not a faiss index ({str(error).splitlines()[0]})") from None
    if ann.ntotal != count or ann.d != DIM:
        raise IndexFolderError(f"{path}: holds {ann.ntotal} x {ann.d}, the header says {count} x {DIM}")
    return ann


# --- checks --------------------------------------------------------------------------------------------

def _check_faces(ids: np.ndarray, names: Sequence[str], vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ids as int64 (N,) and vectors as contiguous float32 (N, 128), or ValueError."""
    ids = np.asarray(ids, np.int64).reshape(-1)
    vectors = np.ascontiguousarray(vectors, np.float32)
    if vectors.ndim != 2 or vectors.shape[1] != DIM or not len(ids) == len(names) == len(vectors):
        raise ValueError(f"need N ids, N names and (N, {DIM}) vectors, got {len(ids)}, {len(names)}, {vectors.shape}")
    return ids, vectors


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise IndexFolderError(f"{path}: cannot be read as JSON ({error})") from None


def _read_header(folder: Path) -> dict:
    """The header of a saved index, checked against this module's format and the files beside it."""
    path = folder / HEADER
    header = _read_json(path)
    if not isinstance(header, dict) or header.get("format") != FORMAT or header.get("version") != VERSION:
        raise IndexFolderError(f"{path}: not a {FORMAT} version {VERSION} header")
    if header.get("dim") != DIM or not isinstance(header.get("count"), int) or not isinstance(header.get("files"),
                                                                                              dict):
        raise IndexFolderError(f"{path}: bad dim, count or files")
    if not isinstance(header.get("index"), str):
        raise IndexFolderError(f"{path}: no index kind")
    if header["index"] != "exact" and not str(header.get("library", "")).startswith("faiss-cpu "):
        raise IndexFolderError(f"{path}: an index from {header.get('library')!r}, not faiss-cpu")
    for name, size in header["files"].items():
        if not (folder / name).is_file() or (folder / name).stat().st_size != size:
            raise IndexFolderError(f"{folder / name}: missing or not the {size} bytes the header says")
    return header


def _load_array(path: Path, dtype: type, count: int) -> np.ndarray:
    """A saved array, memory-mapped read-only, with the dtype and row count the header promises."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise IndexFolderError(f"{path}: cannot be memory-mapped ({error})") from None
    if array.dtype != dtype or len(array) != count:
        raise IndexFolderError(f"{path}: {array.dtype} x {len(array)}, expected {np.dtype(dtype)} x {count}")
    return array
