"""The live gallery: the gallery database as one worker sees it, in step with every change.

At start (`prepare`, once per server, in a child of the worker template) the host's folder is
synced into the database, photos that lack an encoding by the running encoder are re-encoded
from their stored bytes, and for a big gallery the face index is saved beside the database,
so that each worker loads it memory-mapped instead of reading every vector.

Each worker (`GalleryStore`) then holds the gallery as one FaceIndex and, before each request,
applies only the change log's new rows: on SQLite it reads the last sequence number (one indexed
read); on PostgreSQL it takes LISTEN/NOTIFY's news, and reads the sequence at least once a second.
The folder is checked for changes at most once a second, and synced by one worker at a time.

Offline tools (evaluation, benchmarks) take the same way from a folder to encodings: `folder_gallery`.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from tqdm import tqdm

from facewire.faces import images
from facewire.faces.boxes import box_area
from facewire.faces.index import FaceIndex
from facewire.faces.recognize import Face, find_faces
from facewire.faces.settings import DetectorSettings
from facewire.files import write_atomically
from facewire.store.backends import PostgresBackend
from facewire.store.database import Database, FileRecord, NewPhoto, open_database
from facewire.store.gallery import Gallery, scan
from facewire.store.names import BadPhoto, NotFound, check_name
from facewire.store.sync import SyncStats, folder_origin, sync_folder

log = logging.getLogger(__name__)

THUMBNAIL = 160
"""`GalleryStore.photo` fits a person's photo within this many pixels a side."""
FOLDER_CHECK_SECONDS = 1.0
SEQ_CHECK_SECONDS = 1.0
"""On PostgreSQL a worker trusts NOTIFY, and reads the last sequence number at least this often."""
SAVED_INDEX_FROM = 20_000
"""Galleries of this many faces or more get their index saved beside the database at start:
reading 10^5 vectors from SQLite takes about a second, 10^6 about ten."""
STALE_INDEX_CHANGES = 10_000
"""A saved index this many changes behind the database is saved again at the next start."""


def encoder_tag(settings: DetectorSettings) -> str:
    """The tag of the encodings `settings` makes (stored with each vector): it changes with the encoder
    and with every detection setting that could move a face's box."""
    return settings.encoding_tag()


@dataclass(frozen=True)
class PhotoChecks:
    """How new photos are judged (facewire.faces.enrolment's checks, handed in by the server): each returns
    why a photo is refused, or None. `photo` judges a folder photo's largest face (image, face);
    `enrolment` an enrolled one against the gallery (image, face, name, the gallery's index)."""

    photo: Callable[[np.ndarray, Face], str | None]
    enrolment: Callable[[np.ndarray, Face, str, FaceIndex], str | None]


def photo_encoder(settings: DetectorSettings, check: Callable[[np.ndarray, Face], str | None] | None = None):
    """The folder sync's encoder: a photo's bytes -> (faces found, the largest face's encoding or None);
    BadPhoto with `check`'s reason when it refuses the largest face."""
    def encode(data: bytes) -> tuple[int, np.ndarray | None]:
        image = images.decode_image(data)
        faces = find_faces(image, settings)
        if not faces:
            return 0, None
        largest = max(faces, key=lambda face: box_area(face.box))
        problem = None if check is None else check(image, largest)
        if problem is not None:
            raise BadPhoto(problem)
        return len(faces), largest.encoding
    return encode


def index_folder(db: Database, db_url: str) -> Path:
    """Where the saved index of `db` lives: beside a SQLite file, or in the user's cache for PostgreSQL."""
    if isinstance(db.backend, PostgresBackend):
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "facewire"
        return base / f"index-{hashlib.sha256(db_url.encode()).hexdigest()[:16]}"
    return Path(f"{db.backend.path}-index")


@dataclass
class PrepareStats:
    """What `prepare` did: the folder sync, the photos re-encoded, and the index saved (its seq, or None)."""

    sync: SyncStats | None = None
    reencoded: int = 0
    saved_index: int | None = None
    seconds: float = 0.0


def prepare(db_url: str, known_dir: Path | None, settings: DetectorSettings,
            checks: PhotoChecks | None = None) -> PrepareStats:
    """Make the database ready for workers: sync the folder (refusing the photos `checks` refuses), re-encode
    what the encoder lacks, save the index."""
    started, stats = time.perf_counter(), PrepareStats()
    with open_database(db_url) as db:
        if known_dir is not None:
            stats.sync = sync_locked(db, known_dir, settings, wait=True, checks=checks)
        stats.reencoded = reencode(db, settings)
        stats.saved_index = save_index(db, db_url, settings)
    stats.seconds = time.perf_counter() - started
    return stats


def folder_gallery(known_dir: Path, settings: DetectorSettings, db_url: str) -> tuple[Gallery, PrepareStats]:
    """A folder's encodings in memory, for offline tools (evaluation, benchmarks): `prepare` the database
    at `db_url`, then its snapshot as a Gallery in name order. A second call on the same database reads
    no unchanged file."""
    stats = prepare(db_url, known_dir, settings)
    with open_database(db_url) as db:
        snapshot = db.snapshot(encoder_tag(settings))
    order = sorted(range(len(snapshot.names)), key=snapshot.names.__getitem__)
    return Gallery(tuple(snapshot.names[i] for i in order), snapshot.vectors[order]), stats


def sync_locked(db: Database, known_dir: Path, settings: DetectorSettings, wait: bool,
                checks: PhotoChecks | None = None) -> SyncStats | None:
    """Sync the folder, holding a lock on it (flock on the folder itself, so a read-only folder works too),
    refusing the photos `checks` refuses; None when another process of this host holds it and not `wait`."""
    folder = os.open(known_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(folder, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            return None
        encode = photo_encoder(settings, None if checks is None else checks.photo)
        return sync_folder(db, known_dir, encode, encoder_tag(settings))
    finally:
        os.close(folder)


def reencode(db: Database, settings: DetectorSettings) -> int:
    """Encode, from their stored bytes, the photos that have no encoding by `settings`' encoder."""
    needing = db.photos_needing(encoder_tag(settings))
    if needing:
        log.info("re-encoding %d photos for encoder %s", len(needing), encoder_tag(settings))
    encode = photo_encoder(settings)
    for photo in tqdm(needing, desc="re-encoding", unit="photo", disable=len(needing) < 50 or None):
        try:
            faces, vector = encode(photo.data)
        except images.ImageError as exc:
            log.warning("stored photo %d of %s cannot be read (%s)", photo.photo_id, photo.name, exc)
            faces, vector = 0, None
        db.store_encoding(photo.photo_id, encoder_tag(settings), faces, vector, "re-encode")
    return len(needing)


def save_index(db: Database, db_url: str, settings: DetectorSettings) -> int | None:
    """Save the index of a big gallery beside the database, unless the saved one is recent enough;
    returns the seq saved, or None. Older saved indexes are deleted (a worker that maps one keeps it)."""
    folder = index_folder(db, db_url)
    saved = latest_saved(folder)
    seq = db.last_seq()
    if saved is not None and seq - saved[0] < STALE_INDEX_CHANGES:
        return None
    snapshot = db.snapshot(encoder_tag(settings))
    if len(snapshot.photo_ids) < SAVED_INDEX_FROM:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{snapshot.seq:012d}"
    if not target.exists():
        FaceIndex.build(snapshot.photo_ids, snapshot.names, snapshot.vectors).save(target, snapshot.seq)
    for old in folder.iterdir():
        if old != target and not old.name.startswith("."):
            shutil.rmtree(old, ignore_errors=True)
    return snapshot.seq


def latest_saved(folder: Path) -> tuple[int, Path] | None:
    """The newest index saved in `folder` (its seq and path), or None."""
    saved = sorted((int(path.name), path) for path in folder.glob("[0-9]" * 12)) if folder.is_dir() else []
    return saved[-1] if saved else None


@dataclass
class GalleryStore:
    """The gallery database as a worker sees it: `current()` is the face index, in step with the database.
    New photos (enrolled, or synced from the folder) are judged by `checks`; None takes every one."""

    db: Database
    db_url: str
    settings: DetectorSettings
    known_dir: Path | None
    checks: PhotoChecks | None = None
    index: FaceIndex = field(init=False)
    seq: int = 0
    folder_stamp: tuple = ()
    folder_checked: float = 0.0
    seq_checked: float = 0.0

    def __post_init__(self) -> None:
        self.listener = self.db.listen() if isinstance(self.db.backend, PostgresBackend) else None
        self.folder_stamp = self._folder_fingerprint()
        self._load()

    @classmethod
    def open(cls, db_url: str, known_dir: Path | None, settings: DetectorSettings,
             checks: PhotoChecks | None = None) -> GalleryStore:
        return cls(open_database(db_url), db_url, settings, None if known_dir is None else Path(known_dir), checks)

    @classmethod
    def prepared(cls, db_url: str, known_dir: Path | None, settings: DetectorSettings,
                 checks: PhotoChecks | None = None) -> GalleryStore:
        """`prepare`, then `open`: a whole server's start in this process (for tests and tools)."""
        prepare(db_url, known_dir, settings, checks)
        return cls.open(db_url, known_dir, settings, checks)

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
        self.db.close()

    def _load(self) -> None:
        """The index: the saved one (memory-mapped) and the changes since, or the database's snapshot."""
        saved = latest_saved(index_folder(self.db, self.db_url))
        if saved is not None:
            self.index, self.seq = FaceIndex.load(saved[1]), saved[0]
            self._apply_changes()
        else:
            snapshot = self.db.snapshot(encoder_tag(self.settings))
            self.index = FaceIndex.build(snapshot.photo_ids, snapshot.names, snapshot.vectors)
            self.seq = snapshot.seq

    def reload(self) -> FaceIndex:
        """Sync the folder now and rebuild the index from the database."""
        if self.known_dir is not None:
            sync_locked(self.db, self.known_dir, self.settings, wait=True, checks=self.checks)
        self._load()
        return self.index

    def current(self) -> FaceIndex:
        """The gallery as the database has it now: new changes applied, the folder synced if it changed."""
        now = time.monotonic()
        if self.known_dir is not None and now - self.folder_checked >= FOLDER_CHECK_SECONDS:
            self.folder_checked = now
            stamp = self._folder_fingerprint()
            if stamp != self.folder_stamp and sync_locked(self.db, self.known_dir, self.settings, wait=False,
                                                          checks=self.checks):
                self.folder_stamp = stamp
        self.refresh()
        return self.index

    def refresh(self) -> None:
        """Apply the change log's rows after `seq`, if there are any."""
        if self.listener is not None:
            news = self.listener.wait(0)
            if news is None and time.monotonic() - self.seq_checked < SEQ_CHECK_SECONDS:
                return
            self.seq_checked = time.monotonic()
        if self.db.last_seq() > self.seq:
            self._apply_changes()

    def _apply_changes(self) -> None:
        changes = self.db.changes_since(self.seq, encoder_tag(self.settings))
        for change in changes:
            if self._present(change.photo_id) and (change.op == "remove" or change.vector is not None):
                self.index.remove([change.photo_id])
            if change.op == "add" and change.vector is not None:
                self.index.add(np.array([change.photo_id]), [change.name], change.vector[None, :])
        if changes:
            self.seq = changes[-1].seq
            log.info("gallery: %d changes applied, now at seq %d, %d faces", len(changes), self.seq, len(self.index))

    def _present(self, photo_id: int) -> bool:
        try:
            self.index.name_of(photo_id)
        except KeyError:
            return False
        return True

    def _folder_fingerprint(self) -> tuple:
        if self.known_dir is None or not self.known_dir.is_dir():
            return ()
        folders = [p for p in self.known_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
        return (self.known_dir.stat().st_mtime_ns, *sorted((p.name, p.stat().st_mtime_ns) for p in folders))

    def people(self) -> dict[str, int]:
        """Each person's name and photo count (a query over every photo: for `list`, not for every request)."""
        return self.db.people()

    def counts(self) -> tuple[int, int]:
        """How many people the database has, and how many faces this worker matches against."""
        return self.db.people_count(), len(self.current())

    def enrol(self, name: str, image: np.ndarray, who: str = "local") -> int:
        """Add a photo with exactly one face of `name`, unless `checks` refuse it (one transaction, logged with
        `who`); on a host with a folder it also appears there as NAME/<hash>.jpg. Returns that person's photo count."""
        name = check_name(name)
        faces = find_faces(image, self.settings)
        if len(faces) != 1:
            raise BadPhoto(f"the photo must show exactly one face; it shows {len(faces)}")
        problem = None if self.checks is None else self.checks.enrolment(image, faces[0], name, self.current())
        if problem is not None:
            raise BadPhoto(problem)
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise images.ImageError("could not encode the photo")
        photo, sha256 = data.tobytes(), hashlib.sha256(data.tobytes()).hexdigest()
        new = NewPhoto(name, photo, sha256, "api", encoder_tag(self.settings), 1, faces[0].encoding)
        if self.known_dir is None:
            self.db.add_photo(new, who)
        else:  # the mirror file first, then the photo and the file's record in one transaction
            mirror = self.known_dir / name / f"{sha256[:16]}.jpg"
            mirror.parent.mkdir(exist_ok=True)
            write_atomically(mirror, lambda f: f.write(photo))
            stat = mirror.stat()
            record = FileRecord(f"{name}/{mirror.name}", stat.st_size, stat.st_mtime_ns, sha256)
            self.db.record_file(folder_origin(self.known_dir, socket.gethostname()), record, new, who)
        self.refresh()
        log.info("enrolled a photo of %s (by %s)", name, who)
        return self.db.photo_count(name)

    def remove(self, name: str, who: str = "local") -> int:
        """Remove a person: every photo (one transaction, logged with `who`), and this host's files of them."""
        name = check_name(name)
        files = [p.path for p in scan(self.known_dir) if p.name == name] if self.known_dir is not None else []
        removed = self.db.remove_person(name, who)
        if not removed and not files:
            raise NotFound(f"no person called {name}")
        if self.known_dir is not None and (self.known_dir / name).is_dir():
            trash = Path(tempfile.mkdtemp(dir=self.known_dir, prefix=".removing-"))
            os.replace(self.known_dir / name, trash / "person")  # disappears at once, then is deleted
            shutil.rmtree(trash)
        for path in files:
            path.unlink(missing_ok=True)
        self.refresh()
        log.info("removed %s (%d photos, by %s)", name, removed, who)
        return removed

    def photo(self, name: str) -> np.ndarray:
        """A thumbnail (at most THUMBNAIL px a side, BGR) of the person's first photo."""
        name = check_name(name)
        data = self.db.first_photo(name)
        if data is None:
            raise NotFound(f"no photo of {name}" + (" (only imported encodings)" if self.db.photo_count(name) else
                                                    ": no person of that name"))
        image = images.to_bgr(images.decode_image(data))
        scale = THUMBNAIL / max(image.shape[:2])
        return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image

