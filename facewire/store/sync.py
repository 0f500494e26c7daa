"""The folder sync: a `known_faces/` folder mirrored into the gallery database, incrementally.

The folder has the two layouts of `gallery.scan` side by side (`NAME.jpg`, `NAME/*.jpg`). Each
sync owns the rows of its origin, `folder:HOST:ABSOLUTE_FOLDER`, and touches no others:

- a file whose (path, size, mtime_ns) match its record is not read at all;
- a new or changed file is read and hashed; if its SHA-256 is new for that path it is encoded and
  added, replacing the path's old photo (a touched but identical file only updates its record);
- a file that mirrors an "api" photo of its person (same SHA-256) is recorded as that photo,
  not added again, and its deletion leaves the api photo alone;
- a file gone from the folder takes its photo (of this origin) with it.

Photos with no face, and unreadable ones, are logged, counted and remembered (not re-read while
unchanged). Photos the encoder refuses as too poor (BadPhoto) are logged with the reason and counted,
but not remembered: each sync reads them again until they are replaced, and a sync whose encoder takes
them adds them. Every step is one transaction of the database's, logged in its change log.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from facewire.faces import images
from facewire.store.database import Database, FileRecord, NewPhoto
from facewire.store.gallery import Photo, scan
from facewire.store.names import BadName, BadPhoto, check_name

log = logging.getLogger(__name__)

PROGRESS_OVER = 50
"""A progress bar is shown (on a terminal) when more files than this need reading and encoding."""

Encode = Callable[[bytes], "tuple[int, np.ndarray | None]"]
"""The encoder the sync is handed: the photo's bytes (the very bytes hashed and stored, never the path,
which could change in between) -> (faces found, the largest one's vector or None). It raises
images.ImageError for bytes that are not a readable image, and BadPhoto (with the reason) for a face
too poor for the gallery."""


@dataclass
class SyncStats:
    """How a sync went: `unchanged` files were not read; `hashed` were read; `skipped` had no usable face;
    `refused` had a face too poor for the gallery."""

    seen: int = 0
    unchanged: int = 0
    hashed: int = 0
    encoded: int = 0
    added: int = 0
    removed: int = 0
    skipped: int = 0
    refused: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class Candidate:
    """A file whose size or mtime differs from its record (or that has none): it must be read."""

    photo: Photo
    path: str
    size: int
    mtime_ns: int
    known: FileRecord | None


def folder_origin(folder: Path, host: str) -> str:
    """The origin of one host's sync of one folder: folder:HOST:/ABSOLUTE/FOLDER."""
    return f"folder:{host}:{Path(folder).resolve()}"


def read_photo(path: Path) -> bytes:
    """A photo file's bytes (the one place the sync reads a file)."""
    return path.read_bytes()


def sync_folder(db: Database, folder: Path, encode: Encode, encoder: str, host: str = socket.gethostname(),
                who: str = "folder") -> SyncStats:
    """Bring the database's rows of this folder's origin in step with the folder; returns what it did."""
    started = time.perf_counter()
    folder = Path(folder).resolve()
    origin, stats = folder_origin(folder, host), SyncStats()
    known = db.folder_files(origin)
    candidates = _changed_files(folder, known, stats)
    progress = len(candidates) > PROGRESS_OVER and sys.stderr.isatty()
    for candidate in tqdm(candidates, desc="gallery sync", unit="photo", disable=not progress):
        _sync_file(db, origin, candidate, encode, encoder, who, stats)
    for path in sorted(known):
        stats.removed += db.forget_file(origin, path, who)
    stats.seconds = time.perf_counter() - started
    return stats


def _changed_files(folder: Path, known: dict[str, FileRecord], stats: SyncStats) -> list[Candidate]:
    """The photos whose stat differs from their record; the records left in `known` are of deleted files."""
    candidates = []
    for photo in scan(folder):
        stats.seen += 1
        path = photo.path.relative_to(folder).as_posix()
        record = known.pop(path, None)
        try:
            status = photo.path.stat()
        except OSError as exc:
            _skip(stats, photo.path, f"cannot be read ({exc.strerror or exc})")
            continue
        if record is not None and (record.size, record.mtime_ns) == (status.st_size, status.st_mtime_ns):
            stats.unchanged += 1
            continue
        candidates.append(Candidate(photo, path, status.st_size, status.st_mtime_ns, record))
    return candidates


def _sync_file(db: Database, origin: str, candidate: Candidate, encode: Encode, encoder: str, who: str,
               stats: SyncStats) -> None:
    """Read one new or changed file and record it: same content, api mirror, new photo, or no face;
    or refuse it."""
    try:
        check_name(candidate.photo.name)
    except BadName as exc:
        _skip(stats, candidate.photo.path, f"not a usable name ({exc})")
        return
    try:
        data = read_photo(candidate.photo.path)
    except OSError as exc:
        _skip(stats, candidate.photo.path, f"cannot be read ({exc.strerror or exc})")
        return
    stats.hashed += 1
    sha256 = hashlib.sha256(data).hexdigest()
    record = FileRecord(candidate.path, candidate.size, candidate.mtime_ns, sha256)
    if candidate.known is not None and candidate.known.sha256 == sha256:
        db.record_file(origin, replace(record, photo_id=candidate.known.photo_id), who=who)
        return
    mirror = db.api_photo(candidate.photo.name, sha256)
    if mirror is not None:
        db.record_file(origin, replace(record, photo_id=mirror), who=who)
        return
    try:
        photo = _encoded(candidate.photo, data, sha256, origin, encode, encoder, stats)
    except BadPhoto as exc:
        _refuse(db, origin, candidate, str(exc), who, stats)
        return
    db.record_file(origin, record, photo, who=who)
    stats.added += photo is not None


def _encoded(photo: Photo, data: bytes, sha256: str, origin: str, encode: Encode, encoder: str,
             stats: SyncStats) -> NewPhoto | None:
    """The photo to add, or None (logged and counted) when it shows no face or cannot be decoded;
    the encoder's BadPhoto passes through."""
    try:
        faces, vector = encode(data)
    except images.ImageError as exc:
        _skip(stats, photo.path, f"cannot be read ({exc})")
        return None
    stats.encoded += 1
    if not faces or vector is None:
        _skip(stats, photo.path, "no face found")
        return None
    if faces > 1:
        log.warning("gallery photo %s has %d faces; using the largest", photo.path, faces)
    return NewPhoto(photo.name, data, sha256, origin, encoder, faces, vector)


def _refuse(db: Database, origin: str, candidate: Candidate, reason: str, who: str, stats: SyncStats) -> None:
    """A photo too poor for the gallery: logged and counted, left unrecorded (so read again at the next sync),
    and the photo its file held before goes."""
    log.warning("gallery photo %s refused: %s", candidate.photo.path, reason)
    stats.refused += 1
    if candidate.known is not None:
        stats.removed += db.forget_file(origin, candidate.path, who)


def _skip(stats: SyncStats, path: Path, reason: str) -> None:
    log.warning("gallery photo %s skipped: %s", path, reason)
    stats.skipped += 1
