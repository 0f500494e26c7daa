"""The gallery: `known_faces/` on disk -> names and one matrix of encodings.

Two layouts are accepted side by side: `NAME.jpg` (one photo, the name is the
file name) and `NAME/*.jpg` (several photos of one person). Encodings are
cached in an `.npz` file keyed by each photo's SHA-256, so a warm start encodes
nothing and a changed photo re-encodes only itself.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from facewire.faces import images
from facewire.faces.recognize import box_area, find_faces
from facewire.faces.settings import DetectorSettings
from facewire.files import write_atomically

log = logging.getLogger(__name__)

CACHE_FORMAT = "facewire-encodings-v1"
DEFAULT_CACHE_NAME = ".facewire-cache.npz"


@dataclass(frozen=True)
class Photo:
    """A gallery photo and the person it shows."""

    path: Path
    name: str


@dataclass(frozen=True)
class CacheEntry:
    """What one photo yielded: how many faces, and the encoding used (None when no face)."""

    face_count: int
    encoding: np.ndarray | None


@dataclass(frozen=True)
class Gallery:
    """Known encodings, one row per usable photo; `names[i]` is the person of row i."""

    names: tuple[str, ...]
    encodings: np.ndarray

    @property
    def people(self) -> list[str]:
        return sorted(set(self.names))

    @classmethod
    def empty(cls) -> Gallery:
        return cls((), np.empty((0, 128)))


@dataclass
class LoadStats:
    """How a gallery load went, for the "ready" log line and the tests."""

    photos: int = 0
    encoded: int = 0
    from_cache: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0


def scan(known_dir: Path) -> list[Photo]:
    """All gallery photos, sorted: `NAME.ext` files and `NAME/*.ext` folders."""
    photos = []
    for entry in sorted(Path(known_dir).iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            photos += [Photo(p, entry.name) for p in sorted(entry.iterdir()) if images.is_image_path(p)]
        elif images.is_image_path(entry):
            photos.append(Photo(entry, entry.stem))
    return photos


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def encode_photo(path: Path, settings: DetectorSettings) -> CacheEntry:
    """Encode the largest face of a photo file (raises images.ImageError if unreadable)."""
    faces = find_faces(images.read_image(path), settings)
    if not faces:
        return CacheEntry(0, None)
    largest = max(faces, key=lambda face: box_area(face.box))
    return CacheEntry(len(faces), largest.encoding)


def read_cache(path: Path, tag: str) -> dict[str, CacheEntry]:
    """Entries of a cache file; empty (and logged) if it is missing, corrupt, foreign or stale."""
    if not path.exists():
        return {}
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["format"]) != CACHE_FORMAT:
                raise ValueError(f"format {str(data['format'])!r}")
            if str(data["tag"]) != tag:
                log.info("encoding cache %s was made with other settings; re-encoding", path)
                return {}
            hashes, counts, encodings = data["hashes"], data["face_counts"], data["encodings"]
            if not (len(hashes) == len(counts) == len(encodings)) or encodings.shape[1:] != (128,):
                raise ValueError("inconsistent array shapes")
            return {
                str(h): CacheEntry(int(c), enc.astype(np.float64) if c > 0 else None)
                for h, c, enc in zip(hashes, counts, encodings)
            }
    except Exception as exc:  # any unreadable file is rebuilt, never trusted
        log.warning("encoding cache %s is unusable (%s); rebuilding it", path, exc)
        return {}


STALE_TEMP_SECONDS = 60


def remove_stale_temps(path: Path) -> None:
    """Delete temp files a killed writer left beside the cache (old enough not to be in use)."""
    cutoff = time.time() - STALE_TEMP_SECONDS
    for temp in path.parent.glob(f"{path.name}*.tmp"):
        try:
            if temp.stat().st_mtime < cutoff:
                temp.unlink()
        except OSError:
            continue


def write_cache(path: Path, tag: str, entries: dict[str, CacheEntry]) -> None:
    """Write the cache atomically: a temp file in the same folder, fsync, then rename.

    A kill at any moment leaves the old cache or the new one, never a mix.
    """
    remove_stale_temps(path)
    hashes = sorted(entries)
    encodings = np.zeros((len(hashes), 128))
    for row, key in enumerate(hashes):
        if entries[key].encoding is not None:
            encodings[row] = entries[key].encoding
    arrays = {
        "format": np.array(CACHE_FORMAT),
        "tag": np.array(tag),
        "hashes": np.array(hashes, dtype="U64"),
        "face_counts": np.array([entries[k].face_count for k in hashes], dtype=np.int32),
        "encodings": encodings,
    }
    write_atomically(path, lambda f: np.savez(f, **arrays), prefix=path.name)


def cache_path_for(known_dir: Path, cache_path: Path | None = None) -> Path:
    """The cache file to use: the one given, or KNOWN_DIR/.facewire-cache.npz."""
    return Path(cache_path) if cache_path else Path(known_dir) / DEFAULT_CACHE_NAME


def load_gallery(
    known_dir: Path,
    settings: DetectorSettings,
    cache_path: Path | None = None,
    encode: Callable[[Path, DetectorSettings], CacheEntry] = encode_photo,
) -> tuple[Gallery, LoadStats]:
    """Build the gallery from `known_dir`, encoding only photos the cache does not know."""
    started = time.perf_counter()
    cache_path = cache_path_for(known_dir, cache_path)
    tag = settings.cache_tag()
    cached = read_cache(cache_path, tag)
    stats, fresh, names, rows = LoadStats(), {}, [], []
    for photo in scan(known_dir):
        stats.photos += 1
        try:
            key = file_hash(photo.path)
            entry = cached.get(key)
            if entry is None:
                entry = encode(photo.path, settings)
                stats.encoded += 1
            else:
                stats.from_cache += 1
        except (OSError, images.ImageError) as exc:
            log.warning("gallery photo %s skipped: cannot be read (%s)", photo.path, exc)
            stats.skipped.append((photo.path, "unreadable"))
            continue
        fresh[key] = entry
        if entry.face_count == 0:
            log.warning("gallery photo %s skipped: no face found", photo.path)
            stats.skipped.append((photo.path, "no face"))
            continue
        if entry.face_count > 1:
            log.warning("gallery photo %s has %d faces; using the largest", photo.path, entry.face_count)
        names.append(photo.name)
        rows.append(entry.encoding)
    if fresh.keys() != cached.keys():
        _save_quietly(cache_path, tag, fresh)
    stats.seconds = time.perf_counter() - started
    encodings = np.array(rows) if rows else np.empty((0, 128))
    return Gallery(tuple(names), encodings), stats


def _save_quietly(path: Path, tag: str, entries: dict[str, CacheEntry]) -> None:
    """A cache that cannot be written costs speed next time, not service now."""
    try:
        write_cache(path, tag, entries)
    except OSError as exc:
        log.warning("could not write encoding cache %s (%s)", path, exc)
