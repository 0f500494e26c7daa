"""The gallery database's two backends: SQLite (one file) and PostgreSQL (psycopg 3, imported only when one
is used), behind one small interface that database.Database drives (connect, begin, bulk, notify, stream...),
and `Tx`, a cursor taking `?` placeholders on either.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Iterable, Iterator

CHANNEL = "facewire_gallery"
"""The PostgreSQL channel every write NOTIFYs with the newest seq."""
WRITER_LOCK = 0x66776462
"""The PostgreSQL advisory lock every write transaction holds, so that seq order is commit order."""
BUSY_TIMEOUT_SECONDS = 30.0
IMPORT_CHUNK = 10_000
"""Rows per batch of an import, and of a PostgreSQL server-side cursor's fetches."""
SQLITE_MAGIC = b"SQLite format 3\x00"


class DatabaseError(Exception):
    """A gallery database that cannot be opened or used; the message names the file or URL."""


class Tx:
    """A cursor inside one transaction, taking `?` placeholders on either backend."""

    def __init__(self, cursor: Any, placeholder: str) -> None:
        self.cursor = cursor
        self.placeholder = placeholder

    def _sql(self, sql: str) -> str:
        return sql if self.placeholder == "?" else sql.replace("?", self.placeholder)

    def run(self, sql: str, params: tuple = ()) -> int:
        """Execute one statement; returns the number of rows it changed."""
        self.cursor.execute(self._sql(sql), params)
        return self.cursor.rowcount

    def many(self, sql: str, rows: Iterable[tuple]) -> None:
        self.cursor.executemany(self._sql(sql), rows)

    def one(self, sql: str, params: tuple = ()) -> tuple | None:
        self.cursor.execute(self._sql(sql), params)
        return self.cursor.fetchone()

    def value(self, sql: str, params: tuple = ()) -> Any:
        row = self.one(sql, params)
        return None if row is None else row[0]

    def all(self, sql: str, params: tuple = ()) -> list[tuple]:
        self.cursor.execute(self._sql(sql), params)
        return self.cursor.fetchall()


class SqliteBackend:
    """A gallery in one SQLite file (and its -wal beside it)."""

    placeholder = "?"
    types = {"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "blob": "BLOB", "real": "REAL"}

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)

    def connect(self, create: bool) -> sqlite3.Connection:
        """Check the file looks like an intact SQLite database, then open it (WAL, FULL sync, foreign keys)."""
        if not self.path.exists() and not create:
            raise DatabaseError(f"{self.name}: no such gallery database")
        check_sqlite_file(self.path)
        try:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None,
                                   check_same_thread=False)  # one user at a time, maybe not its maker
        except sqlite3.Error as exc:
            raise DatabaseError(f"{self.name}: cannot open: {exc}") from exc
        try:
            self._configure(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _configure(self, conn: sqlite3.Connection) -> None:
        """Foreign keys, the busy timeout, WAL and synchronous=FULL: every commit is on disk when it returns."""
        try:
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            raise DatabaseError(f"{self.name}: not a usable SQLite database ({exc})") from exc
        if mode.lower() != "wal":
            raise DatabaseError(f"{self.name}: cannot use write-ahead logging here (journal mode {mode})")

    def begin(self, tx: Tx, write: bool) -> None:
        tx.run("BEGIN IMMEDIATE" if write else "BEGIN")

    def errors(self) -> tuple[type[Exception], ...]:
        return (sqlite3.Error,)

    def tables(self, tx: Tx) -> set[str]:
        return {row[0] for row in tx.all("SELECT name FROM sqlite_master WHERE type = 'table'")} - {"sqlite_sequence"}

    def reserve_ids(self, tx: Tx, count: int) -> int:
        """The first of `count` fresh photo ids (the write lock is held, so nobody else takes them)."""
        last = tx.value("SELECT seq FROM sqlite_sequence WHERE name = 'photos'")
        return (last or 0) + 1

    def bulk(self, tx: Tx, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
        marks = ", ".join("?" * len(columns))
        tx.many(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def notify(self, tx: Tx) -> None:
        """SQLite has no notifications: readers poll `last_seq()`."""

    def analyze(self, tx: Tx) -> None:
        """SQLite's planner needs no fresh statistics to use its indexes."""

    def size(self, tx: Tx) -> int:
        wal = Path(f"{self.path}-wal")
        return self.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)

    def stream(self, conn: Any, tx: Tx, sql: str, params: tuple) -> Iterator[tuple]:
        tx.cursor.execute(sql, params)
        yield from tx.cursor


def check_sqlite_file(path: Path) -> None:
    """Refuse a file that is not SQLite, or is shorter than its header says (a truncated copy).

    The length check is skipped while a -wal file holds frames: then the main file may legitimately
    lag its header until SQLite replays the log."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb") as f:
        header = f.read(100)
    if len(header) < 100 or not header.startswith(SQLITE_MAGIC):
        raise DatabaseError(f"{path}: not a SQLite database (a facewire gallery is one)")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages, counter, valid_for = (int.from_bytes(header[i:i + 4], "big") for i in (28, 24, 92))
    wal = Path(f"{path}-wal")
    if wal.exists() and wal.stat().st_size > 0 or pages == 0 or counter != valid_for:
        return
    if path.stat().st_size < pages * page_size:
        raise DatabaseError(f"{path}: truncated: {path.stat().st_size} bytes, but its header says "
                            f"{pages} pages of {page_size} bytes")


class PostgresBackend:
    """A gallery in a PostgreSQL database (psycopg 3, imported only when one is used)."""

    placeholder = "%s"
    types = {"id": "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", "blob": "BYTEA", "real": "DOUBLE PRECISION"}

    def __init__(self, url: str) -> None:
        self.url = url
        self.name = redact(url)

    def connect(self, create: bool) -> Any:
        import psycopg

        try:
            return psycopg.connect(self.url, autocommit=True)
        except psycopg.Error as exc:
            raise DatabaseError(f"{self.name}: cannot connect: {str(exc).strip()}") from exc

    def begin(self, tx: Tx, write: bool) -> None:
        """Writers take the advisory lock; readers get one consistent snapshot (REPEATABLE READ)."""
        if write:
            tx.run("BEGIN")
            tx.run("SELECT pg_advisory_xact_lock(?)", (WRITER_LOCK,))
        else:
            tx.run("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def errors(self) -> tuple[type[Exception], ...]:
        import psycopg

        return (psycopg.Error,)

    def tables(self, tx: Tx) -> set[str]:
        return {row[0] for row in tx.all("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")}

    def reserve_ids(self, tx: Tx, count: int) -> int:
        """The first of `count` consecutive photo ids, taken from the sequence under the writer lock."""
        first = tx.value("SELECT nextval(pg_get_serial_sequence('photos', 'id'))")
        tx.run("SELECT setval(pg_get_serial_sequence('photos', 'id'), ?)", (first + count - 1,))
        return first

    def bulk(self, tx: Tx, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
        """COPY in binary (no text escaping of the vectors)."""
        with tx.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types([COPY_TYPES[column] for column in columns])
            for row in rows:
                copy.write_row(row)

    def notify(self, tx: Tx) -> None:
        """Tell listeners the newest seq; delivered when (and only if) the transaction commits."""
        tx.run(f"SELECT pg_notify('{CHANNEL}', (SELECT max(seq) FROM changes)::text)")

    def analyze(self, tx: Tx) -> None:
        """Fresh statistics after a bulk import: without them the planner scans the whole change log for
        `changes_since` (4-5 s at 10^6 faces, measured) instead of reading its primary key's end."""
        tx.run("ANALYZE")

    def size(self, tx: Tx) -> int:
        return tx.value("SELECT pg_database_size(current_database())")

    def stream(self, conn: Any, tx: Tx, sql: str, params: tuple) -> Iterator[tuple]:
        """Rows fetched in batches by a server-side cursor, so a million vectors need not fit at once."""
        with conn.cursor(name="facewire_stream") as cursor:
            cursor.itersize = IMPORT_CHUNK
            cursor.execute(sql.replace("?", "%s"), params)
            yield from cursor


COPY_TYPES = {"id": "int8", "person_id": "int8", "photo_id": "int8", "faces": "int4", "added_at": "float8",
              "origin": "text", "added_by": "text", "encoder": "text", "vector": "bytea"}
"""PostgreSQL's type of each column the bulk import copies, as binary COPY needs them."""


def redact(url: str) -> str:
    """A URL fit for a message: any password replaced by ***."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at or ":" not in credentials:
        return url
    return f"{scheme}{sep}{credentials.split(':', 1)[0]}:***@{host}"


def backend_for(url: str) -> SqliteBackend | PostgresBackend:
    """The backend a URL names: sqlite:///PATH (sqlite:////ABS/PATH) or postgresql://..."""
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return SqliteBackend(Path(url[len("sqlite:///"):]))
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresBackend(url)
    raise ValueError(f"unsupported gallery database URL {redact(url)!r}: use sqlite:///PATH or postgresql://...")
