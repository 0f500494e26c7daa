"""The gallery database: people, their photos and encodings, the folder sync's bookkeeping, a change log.

One schema for SQLite (the standard library's sqlite3: WAL, synchronous=FULL, foreign keys) and
PostgreSQL 15 (psycopg 3), opened with `open_database(url)`. Every write is one transaction, and
every photo it adds or removes appends one row to `changes` in that same transaction (on PostgreSQL
it also does NOTIFY facewire_gallery, '<seq>'). A reader takes `snapshot(encoder)` once, then
follows `changes_since(seq, encoder)`; `last_seq()` is one indexed read, cheap enough to poll.

Durability: once a write method returns, the change survives a kill -9 of the process; a kill
during the transaction leaves no trace of it. Writers are serialized (SQLite's write lock,
PostgreSQL's advisory lock), so the order of `seq` is the order of commits: a reader that has seen
seq N has seen every change up to N.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np

from facewire.store.backends import (
    CHANNEL,
    IMPORT_CHUNK,
    DatabaseError,
    PostgresBackend,
    SqliteBackend,
    Tx,
    backend_for,
)
from facewire.store.names import check_name

FORMAT = "facewire-gallery"
SCHEMA_VERSION = 1
VECTOR_SIZE = 128
VECTOR_DTYPE = np.dtype("<f4")
IMPORTED = "imported"
"""The encoder tag of imported encodings: they have no photo to re-encode, so every encoder uses them."""

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE people (id {id}, name TEXT NOT NULL UNIQUE);
CREATE TABLE photos (
    id {id},
    person_id BIGINT NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    sha256 TEXT,
    data {blob},
    origin TEXT NOT NULL,
    added_at {real} NOT NULL,
    added_by TEXT NOT NULL);
CREATE INDEX photos_person ON photos(person_id);
CREATE INDEX photos_sha256 ON photos(sha256);
CREATE TABLE encodings (
    photo_id BIGINT NOT NULL REFERENCES photos(id) ON DELETE CASCADE,
    encoder TEXT NOT NULL,
    faces INTEGER NOT NULL,
    vector {blob},
    PRIMARY KEY (photo_id, encoder),
    CHECK ((faces = 0) = (vector IS NULL)));
CREATE INDEX encodings_encoder ON encodings(encoder, photo_id);
CREATE TABLE folder_files (
    origin TEXT NOT NULL,
    path TEXT NOT NULL,
    size BIGINT NOT NULL,
    mtime_ns BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    photo_id BIGINT REFERENCES photos(id) ON DELETE SET NULL,
    PRIMARY KEY (origin, path));
CREATE INDEX folder_files_photo ON folder_files(photo_id);
CREATE TABLE changes (
    seq {id},
    at {real} NOT NULL,
    who TEXT NOT NULL,
    op TEXT NOT NULL CHECK (op IN ('add', 'remove')),
    photo_id BIGINT NOT NULL,
    person TEXT NOT NULL);
"""

TABLES = ("meta", "people", "photos", "encodings", "folder_files", "changes")


@dataclass(frozen=True)
class NewPhoto:
    """A photo to add: its person, bytes (None for an imported encoding), origin and encoding.

    `origin` is "api", "import" or "folder:HOST:ABSOLUTE_FOLDER"; `faces` is how many faces the
    photo showed, and `vector` the encoding of the largest (128 numbers)."""

    name: str
    data: bytes | None
    sha256: str | None
    origin: str
    encoder: str
    faces: int
    vector: np.ndarray


@dataclass(frozen=True)
class FileRecord:
    """What the folder sync knows of one file: `path` is relative to the folder, `photo_id` None
    for a file with no usable face (remembered so that it is not read again while unchanged)."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    photo_id: int | None = None


@dataclass(frozen=True)
class Change:
    """One change-log row; `vector` is the photo's encoding for the encoder asked (adds only)."""

    seq: int
    op: str
    photo_id: int
    name: str
    vector: np.ndarray | None


@dataclass(frozen=True)
class Snapshot:
    """The gallery for one encoder as of change `seq`: row i is photo `photo_ids[i]` of `names[i]`."""

    seq: int
    photo_ids: np.ndarray
    names: list[str]
    vectors: np.ndarray


@dataclass(frozen=True)
class StoredPhoto:
    """A photo with bytes, as `photos_needing` returns it for re-encoding."""

    photo_id: int
    name: str
    data: bytes


@dataclass(frozen=True)
class Stats:
    """Counts for an operator: photos without bytes are imported encodings."""

    people: int
    photos: int
    without_bytes: int
    encoders: list[str]
    size_bytes: int


def vector_bytes(vector: Any) -> bytes:
    """128 finite numbers -> 512 bytes of little-endian float32 (ValueError otherwise)."""
    array = np.asarray(vector, dtype=VECTOR_DTYPE)
    if array.shape != (VECTOR_SIZE,):
        raise ValueError(f"an encoding must be {VECTOR_SIZE} numbers, not shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("an encoding must be finite numbers")
    return array.tobytes()


def vector_from(blob: bytes | None) -> np.ndarray | None:
    return None if blob is None else np.frombuffer(bytes(blob), dtype=VECTOR_DTYPE)


def check_origin(origin: str) -> str:
    """"api", "import" or "folder:HOST:/ABSOLUTE/FOLDER"; anything else is a ValueError."""
    if origin in ("api", "import"):
        return origin
    parts = origin.split(":", 2)
    if len(parts) == 3 and parts[0] == "folder" and parts[1] and parts[2].startswith("/"):
        return origin
    raise ValueError(f"origin must be api, import or folder:HOST:/ABSOLUTE/PATH, not {origin!r}")


def import_row(names: dict[str, str], number: int, name: str, vector: Any) -> tuple[str, bytes]:
    """(checked name, vector bytes) of import row `number`; `names` caches the names already checked."""
    try:
        checked = names.get(name)
        if checked is None:
            checked = names[name] = check_name(name)
        return checked, vector_bytes(vector)
    except ValueError as exc:
        raise ValueError(f"import row {number} ({name!r}): {exc}") from None


def open_database(url: str, create: bool = True) -> Database:
    """Open (and with `create`, make) the gallery database at `url`; DatabaseError if it is unusable."""
    backend = backend_for(url)
    conn = backend.connect(create)
    database = Database(backend, conn)
    try:
        database.check_schema(create)
    except BaseException:
        database.close()
        raise
    return database


class Database:
    """The gallery database. Every public write is one transaction; reads see one consistent state."""

    def __init__(self, backend: SqliteBackend | PostgresBackend, conn: Any) -> None:
        self.backend = backend
        self.conn = conn
        self.name = backend.name

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self, write: bool = False) -> Iterator[Tx]:
        """One transaction: committed when the block ends, rolled back if it raises.
        A backend error becomes a DatabaseError naming the database."""
        tx = Tx(self.conn.cursor(), self.backend.placeholder)
        try:
            self.backend.begin(tx, write)
            yield tx
            tx.run("COMMIT")
        except self.backend.errors() as exc:
            self._rollback(tx)
            raise DatabaseError(f"{self.name}: {str(exc).strip()}") from exc
        except BaseException:
            self._rollback(tx)
            raise
        finally:
            tx.cursor.close()

    def _rollback(self, tx: Tx) -> None:
        try:
            tx.run("ROLLBACK")
        except self.backend.errors():
            pass  # no transaction was open, or the connection is gone: nothing was committed

    # -- the schema

    def check_schema(self, create: bool) -> None:
        """Create the schema in an empty database, or check that this one is a gallery we understand."""
        with self.transaction(write=create) as tx:
            tables = self.backend.tables(tx)
            if not tables and create:
                self._create_schema(tx)
                return
            self._check_meta(tx, tables)

    def _create_schema(self, tx: Tx) -> None:
        for statement in SCHEMA.format(**self.backend.types).split(";"):
            if statement.strip():
                tx.run(statement)
        tx.many("INSERT INTO meta (key, value) VALUES (?, ?)",
                [("format", FORMAT), ("schema_version", str(SCHEMA_VERSION))])

    def _check_meta(self, tx: Tx, tables: set[str]) -> None:
        if "meta" not in tables:
            raise DatabaseError(f"{self.name}: not a facewire gallery (it has tables {sorted(tables)}, "
                                "but no meta table)")
        meta = dict(tx.all("SELECT key, value FROM meta"))
        if meta.get("format") != FORMAT:
            raise DatabaseError(f"{self.name}: not a facewire gallery (format {meta.get('format')!r})")
        version = meta.get("schema_version", "")
        if not version.isdigit():
            raise DatabaseError(f"{self.name}: unknown gallery schema version {version!r}")
        if int(version) != SCHEMA_VERSION:
            raise DatabaseError(f"{self.name}: gallery schema version {version} is not the one this facewire "
                                f"understands ({SCHEMA_VERSION}); use a matching facewire")
        missing = set(TABLES) - tables
        if missing:
            raise DatabaseError(f"{self.name}: damaged gallery: tables {sorted(missing)} are missing")

    # -- writes

    def add_photo(self, photo: NewPhoto, who: str) -> int:
        """Add a photo and its encoding (the person is created if new); returns the photo's id."""
        with self.transaction(write=True) as tx:
            photo_id = self._insert_photo(tx, photo, who)
            self.backend.notify(tx)
        return photo_id

    def _insert_photo(self, tx: Tx, photo: NewPhoto, who: str) -> int:
        name, vector = check_name(photo.name), vector_bytes(photo.vector)
        check_origin(photo.origin)
        if photo.faces < 1:
            raise ValueError(f"a photo with an encoding shows at least one face, not {photo.faces}")
        now = time.time()
        person_id = self._person_id(tx, name)
        photo_id = tx.value("INSERT INTO photos (person_id, sha256, data, origin, added_at, added_by) "
                            "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                            (person_id, photo.sha256, photo.data, photo.origin, now, who))
        tx.run("INSERT INTO encodings (photo_id, encoder, faces, vector) VALUES (?, ?, ?, ?)",
               (photo_id, photo.encoder, photo.faces, vector))
        tx.run("INSERT INTO changes (at, who, op, photo_id, person) VALUES (?, ?, 'add', ?, ?)",
               (now, who, photo_id, name))
        return photo_id

    def _person_id(self, tx: Tx, name: str) -> int:
        tx.run("INSERT INTO people (name) VALUES (?) ON CONFLICT (name) DO NOTHING", (name,))
        return tx.value("SELECT id FROM people WHERE name = ?", (name,))

    def remove_person(self, name: str, who: str) -> int:
        """Remove a person and all their photos, whatever their origin; returns how many photos went."""
        name = check_name(name)
        with self.transaction(write=True) as tx:
            logged = self._log_removals(tx, "pe.name = ?", (name,), who)
            tx.run("DELETE FROM people WHERE name = ?", (name,))
            if logged:
                self.backend.notify(tx)
        return logged

    def remove_photos(self, photo_ids: Iterable[int], who: str) -> int:
        """Remove photos by id (unknown ids are ignored); a person left with none goes too.
        Returns how many photos went."""
        with self.transaction(write=True) as tx:
            removed = sum(self._remove_photo(tx, int(photo_id), who) for photo_id in photo_ids)
            if removed:
                self.backend.notify(tx)
        return removed

    def _remove_photo(self, tx: Tx, photo_id: int, who: str, origin: str | None = None) -> int:
        """Remove one photo (only if it has `origin`, when given), logged; its person too if left empty."""
        person_id, photo_origin = tx.one("SELECT person_id, origin FROM photos WHERE id = ?", (photo_id,)) or (None, None)
        if person_id is None or origin not in (None, photo_origin):
            return 0
        self._log_removals(tx, "ph.id = ?", (photo_id,), who)
        tx.run("DELETE FROM photos WHERE id = ?", (photo_id,))
        tx.run("DELETE FROM people WHERE id = ? AND NOT EXISTS (SELECT 1 FROM photos WHERE person_id = ?)",
               (person_id, person_id))
        return 1

    def _log_removals(self, tx: Tx, where: str, params: tuple, who: str) -> int:
        """One 'remove' change row per photo matching `where` (over photos ph JOIN people pe)."""
        return tx.run("INSERT INTO changes (at, who, op, photo_id, person) "
                      "SELECT ?, ?, 'remove', ph.id, pe.name FROM photos ph JOIN people pe ON pe.id = ph.person_id "
                      f"WHERE {where} ORDER BY ph.id", (time.time(), who, *params))

    def store_encoding(self, photo_id: int, encoder: str, faces: int, vector: Any | None, who: str) -> None:
        """Record a stored photo's encoding by another encoder (`vector` None when it found no face).
        An encoding logs an 'add' of the photo, so readers of that encoder learn of it."""
        blob = None if vector is None or faces == 0 else vector_bytes(vector)
        with self.transaction(write=True) as tx:
            tx.run("INSERT INTO encodings (photo_id, encoder, faces, vector) VALUES (?, ?, ?, ?) "
                   "ON CONFLICT (photo_id, encoder) DO UPDATE SET faces = excluded.faces, vector = excluded.vector",
                   (photo_id, encoder, faces if blob else 0, blob))
            if blob is not None:
                tx.run("INSERT INTO changes (at, who, op, photo_id, person) SELECT ?, ?, 'add', ph.id, pe.name "
                       "FROM photos ph JOIN people pe ON pe.id = ph.person_id WHERE ph.id = ?",
                       (time.time(), who, photo_id))
                self.backend.notify(tx)

    def import_vectors(self, rows: Iterable[tuple[str, Any]], who: str, encoder: str) -> int:
        """Import (name, vector) rows as photos without bytes, all in ONE transaction: a bad row
        (ValueError naming its number) imports nothing. Returns how many were imported."""
        with self.transaction(write=True) as tx:
            people = dict(tx.all("SELECT name, id FROM people"))
            names: dict[str, str] = {}
            count, chunk = 0, []
            for number, (name, vector) in enumerate(rows, 1):
                chunk.append(import_row(names, number, name, vector))
                if len(chunk) == IMPORT_CHUNK:
                    count += self._import_chunk(tx, people, chunk, who, encoder)
                    chunk = []
            count += self._import_chunk(tx, people, chunk, who, encoder)
            if count:
                self.backend.notify(tx)
                self.backend.analyze(tx)
        return count

    def _import_chunk(self, tx: Tx, people: dict[str, int], chunk: list[tuple[str, bytes]], who: str,
                      encoder: str) -> int:
        """Bulk-insert a chunk of checked rows: new people, photos, encodings, then their change rows."""
        if not chunk:
            return 0
        self._add_people(tx, people, {name for name, _ in chunk})
        first, now = self.backend.reserve_ids(tx, len(chunk)), time.time()
        ids = range(first, first + len(chunk))
        self.backend.bulk(tx, "photos", ("id", "person_id", "origin", "added_at", "added_by"),
                          [(i, people[name], "import", now, who) for i, (name, _) in zip(ids, chunk)])
        self.backend.bulk(tx, "encodings", ("photo_id", "encoder", "faces", "vector"),
                          [(i, encoder, 1, vector) for i, (_, vector) in zip(ids, chunk)])
        tx.run("INSERT INTO changes (at, who, op, photo_id, person) SELECT ?, ?, 'add', ph.id, pe.name "
               "FROM photos ph JOIN people pe ON pe.id = ph.person_id WHERE ph.id BETWEEN ? AND ? ORDER BY ph.id",
               (now, who, ids.start, ids.stop - 1))
        return len(chunk)

    def _add_people(self, tx: Tx, people: dict[str, int], names: set[str]) -> None:
        """Create the people not yet in `people`, in one batch, and add their ids to it (ids only grow,
        and the writer lock is held, so the new ones are those above the largest known)."""
        new = sorted(names - people.keys())
        if new:
            known = max(people.values(), default=0)
            tx.many("INSERT INTO people (name) VALUES (?)", [(name,) for name in new])
            people.update(tx.all("SELECT name, id FROM people WHERE id > ?", (known,)))


    # -- the folder sync's bookkeeping

    def folder_files(self, origin: str) -> dict[str, FileRecord]:
        """Every file the sync of `origin` has recorded, by relative path."""
        with self.transaction() as tx:
            rows = tx.all("SELECT path, size, mtime_ns, sha256, photo_id FROM folder_files WHERE origin = ?",
                          (origin,))
        return {row[0]: FileRecord(*row) for row in rows}

    def api_photo(self, name: str, sha256: str) -> int | None:
        """The id of an "api" photo of `name` with these bytes (its mirror in a folder is not added again)."""
        with self.transaction() as tx:
            return tx.value("SELECT ph.id FROM photos ph JOIN people pe ON pe.id = ph.person_id "
                            "WHERE pe.name = ? AND ph.sha256 = ? AND ph.origin = 'api' ORDER BY ph.id LIMIT 1",
                            (name, sha256))

    def record_file(self, origin: str, record: FileRecord, photo: NewPhoto | None = None,
                    who: str = "folder") -> int | None:
        """In one transaction: the file's previous photo of this origin goes (unless the record still
        points at it), `photo` (if any) is added, and the record is stored pointing at it.
        Returns the photo id recorded."""
        check_origin(origin)
        with self.transaction(write=True) as tx:
            previous = tx.value("SELECT photo_id FROM folder_files WHERE origin = ? AND path = ?",
                                (origin, record.path))
            removed = 0
            if previous is not None and previous != record.photo_id:
                removed = self._remove_photo(tx, previous, who, origin)
            photo_id = self._insert_photo(tx, photo, who) if photo is not None else record.photo_id
            tx.run("INSERT INTO folder_files (origin, path, size, mtime_ns, sha256, photo_id) "
                   "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (origin, path) DO UPDATE SET size = excluded.size, "
                   "mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256, photo_id = excluded.photo_id",
                   (origin, record.path, record.size, record.mtime_ns, record.sha256, photo_id))
            if removed or photo is not None:
                self.backend.notify(tx)
        return photo_id

    def forget_file(self, origin: str, path: str, who: str = "folder") -> int:
        """A file gone from the folder: its record goes, and its photo if this origin added it
        (a mirrored api photo stays). Returns how many photos went (0 or 1)."""
        with self.transaction(write=True) as tx:
            photo_id = tx.value("SELECT photo_id FROM folder_files WHERE origin = ? AND path = ?", (origin, path))
            tx.run("DELETE FROM folder_files WHERE origin = ? AND path = ?", (origin, path))
            removed = self._remove_photo(tx, photo_id, who, origin) if photo_id is not None else 0
            if removed:
                self.backend.notify(tx)
        return removed

    # -- reads

    def people(self) -> dict[str, int]:
        """Each person's name and photo count, sorted by name."""
        with self.transaction() as tx:
            rows = tx.all("SELECT pe.name, count(ph.id) FROM people pe LEFT JOIN photos ph ON ph.person_id = pe.id "
                          "GROUP BY pe.name ORDER BY pe.name")
        return dict(rows)

    def people_count(self) -> int:
        """How many people there are: one count, no grouping (cheap enough for every ping)."""
        with self.transaction() as tx:
            return tx.value("SELECT count(*) FROM people")

    def photo_count(self, name: str) -> int:
        """How many photos `name` has (0 for nobody): one count over the person's index entries."""
        with self.transaction() as tx:
            return tx.value("SELECT count(*) FROM photos ph JOIN people pe ON pe.id = ph.person_id WHERE pe.name = ?",
                            (name,))

    def first_photo(self, name: str) -> bytes | None:
        """The bytes of a person's first photo that has any (None: no such person, or only imports)."""
        with self.transaction() as tx:
            data = tx.value("SELECT ph.data FROM photos ph JOIN people pe ON pe.id = ph.person_id "
                            "WHERE pe.name = ? AND ph.data IS NOT NULL ORDER BY ph.id LIMIT 1", (name,))
        return None if data is None else bytes(data)

    def last_seq(self) -> int:
        """The newest change's seq (0 for none): one read of the primary key's last entry."""
        cursor = self.conn.cursor()
        try:
            cursor.execute("SELECT seq FROM changes ORDER BY seq DESC LIMIT 1")
            row = cursor.fetchone()
        except self.backend.errors() as exc:
            raise DatabaseError(f"{self.name}: {str(exc).strip()}") from exc
        finally:
            cursor.close()
        return row[0] if row else 0

    def snapshot(self, encoder: str) -> Snapshot:
        """Every photo's vector for `encoder` (and every imported one), and the seq they are current as of,
        read in one transaction."""
        ids, names, blobs = [], [], bytearray()
        interned: dict[str, str] = {}
        with self.transaction() as tx:
            seq = tx.value("SELECT coalesce(max(seq), 0) FROM changes")
            for photo_id, name, vector in self._vectors(tx, encoder, "ph.id, pe.name, e.vector"):
                ids.append(photo_id)
                names.append(interned.setdefault(name, name))
                blobs += vector
        vectors = np.frombuffer(bytes(blobs), dtype=VECTOR_DTYPE).reshape(-1, VECTOR_SIZE)
        return Snapshot(seq, np.array(ids, dtype=np.int64), names, vectors)

    def _vectors(self, tx: Tx, encoder: str, columns: str) -> Iterator[tuple]:
        return self.backend.stream(
            self.conn, tx, f"SELECT {columns} FROM encodings e JOIN photos ph ON ph.id = e.photo_id "
            "JOIN people pe ON pe.id = ph.person_id WHERE e.encoder IN (?, ?) AND e.vector IS NOT NULL ORDER BY ph.id",
            (encoder, IMPORTED))

    def export(self, encoder: str) -> Iterator[tuple[str, np.ndarray]]:
        """(name, vector) of every photo encoded by `encoder`, streamed from one transaction."""
        with self.transaction() as tx:
            for name, vector in self._vectors(tx, encoder, "pe.name, e.vector"):
                yield name, vector_from(vector)

    def changes_since(self, seq: int, encoder: str) -> list[Change]:
        """The change log after `seq`, oldest first; an add carries the photo's vector for `encoder`
        (None if it has none, or was removed since). Apply adds as upserts by photo id."""
        with self.transaction() as tx:
            rows = tx.all("SELECT c.seq, c.op, c.photo_id, c.person, e.vector FROM changes c "
                          "LEFT JOIN encodings e ON c.op = 'add' AND e.photo_id = c.photo_id AND e.encoder IN (?, ?) "
                          "WHERE c.seq > ? ORDER BY c.seq", (encoder, IMPORTED, seq))
        return [Change(s, op, photo_id, name, vector_from(v)) for s, op, photo_id, name, v in rows]

    def photos_needing(self, encoder: str) -> list[StoredPhoto]:
        """Photos with bytes but no encoding by `encoder` (to re-encode after a change of encoder)."""
        with self.transaction() as tx:
            rows = tx.all("SELECT ph.id, pe.name, ph.data FROM photos ph JOIN people pe ON pe.id = ph.person_id "
                          "WHERE ph.data IS NOT NULL AND NOT EXISTS "
                          "(SELECT 1 FROM encodings e WHERE e.photo_id = ph.id AND e.encoder = ?) ORDER BY ph.id",
                          (encoder,))
        return [StoredPhoto(photo_id, name, bytes(data)) for photo_id, name, data in rows]

    def stats(self) -> Stats:
        """People, photos, imported photos (no bytes), encoders present, and the database's size."""
        with self.transaction() as tx:
            people = tx.value("SELECT count(*) FROM people")
            photos, without = tx.one("SELECT count(*), count(*) - count(data) FROM photos")
            encoders = [row[0] for row in tx.all("SELECT DISTINCT encoder FROM encodings ORDER BY encoder")]
            size = self.backend.size(tx)
        return Stats(people, photos, without, encoders, size)

    def listen(self) -> Listener:
        """A listener for changes: LISTEN on PostgreSQL, polling `last_seq()` on SQLite."""
        return Listener(self)


class Listener:
    """Waits for changes to the gallery: `wait(timeout)` returns the newest seq, or None if none came."""

    POLL_SECONDS = 0.05

    def __init__(self, database: Database) -> None:
        self.database = database
        self.seen = database.last_seq()
        self.conn = None
        if isinstance(database.backend, PostgresBackend):
            self.conn = database.backend.connect(create=False)
            self.conn.execute(f"LISTEN {CHANNEL}")

    def wait(self, timeout: float) -> int | None:
        """The latest seq notified within `timeout` seconds (None if none); later pending ones are drained."""
        return self._wait_notified(timeout) if self.conn is not None else self._wait_polled(timeout)

    def _wait_notified(self, timeout: float) -> int | None:
        latest = None
        for notify in self.conn.notifies(timeout=timeout, stop_after=1):
            latest = int(notify.payload)
        for notify in self.conn.notifies(timeout=0):
            latest = max(latest or 0, int(notify.payload))
        return latest

    def _wait_polled(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while True:
            seq = self.database.last_seq()
            if seq > self.seen:
                self.seen = seq
                return seq
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(self.POLL_SECONDS, max(0.0, deadline - time.monotonic())))

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
