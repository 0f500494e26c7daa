"""The gallery database on SQLite and PostgreSQL: schema, writes and their change log, reads, errors, durability."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facewire.faces import images
from facewire.process import ROOT
from facewire.store import database
from facewire.store.backends import DatabaseError
from facewire.store.database import FORMAT, FileRecord, NewPhoto, open_database

pytest_plugins = ("tests.postgres",)

ENCODER = "fake"


def vec(i: int) -> np.ndarray:
    """A distinct, exactly representable encoding for each i."""
    return np.arange(128, dtype=np.float32) / 128 + i


def new_photo(name: str, i: int, origin: str = "api", data: bytes | None = b"jpeg", encoder: str = ENCODER,
              faces: int = 1) -> NewPhoto:
    return NewPhoto(name, data, f"sha{i}", origin, encoder, faces, vec(i))


@pytest.fixture
def db(database_url):
    with open_database(database_url) as database:
        yield database


def log_rows(db) -> list[tuple]:
    """The whole change log as (seq, op, photo_id, person, who)."""
    with db.transaction() as tx:
        return tx.all("SELECT seq, op, photo_id, person, who FROM changes ORDER BY seq")


def sqlite_path(url: str) -> Path:
    return Path(url[len("sqlite:///"):])


# -- opening: URLs, settings, schema


def test_sqlite_urls_relative_and_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open_database("sqlite:///rel.db") as database:
        database.add_photo(new_photo("ann", 1), who="t")
    assert (tmp_path / "rel.db").exists()
    with open_database(f"sqlite:///{tmp_path}/rel.db") as database:
        assert database.people() == {"ann": 1}
    assert str(tmp_path).startswith("/")  # so the URL above was sqlite:////ABS/rel.db


@pytest.mark.parametrize("url", ["mysql://host/db", "sqlite://", "sqlite:///", "gallery.db", "http://x/y"])
def test_other_urls_are_a_value_error_naming_the_url(url):
    with pytest.raises(ValueError, match="unsupported gallery database URL") as caught:
        open_database(url)
    assert repr(url) in str(caught.value)


def test_a_password_is_never_shown():
    with pytest.raises(DatabaseError) as caught:
        open_database("postgresql://ann:secret@/nodb?host=/nonexistent-facewire-socket")
    assert "secret" not in str(caught.value) and "ann:***@" in str(caught.value)


def test_sqlite_settings_wal_full_sync_foreign_keys_busy_timeout(tmp_path):
    with open_database(f"sqlite:///{tmp_path}/g.db") as database:
        pragma = {name: database.conn.execute(f"PRAGMA {name}").fetchone()[0]
                  for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")}
    assert pragma == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1, "busy_timeout": 30000}


def test_the_schema_is_marked_and_reopens(database_url):
    with open_database(database_url) as database:
        with database.transaction() as tx:
            assert dict(tx.all("SELECT key, value FROM meta")) == {"format": FORMAT, "schema_version": "1"}
        database.add_photo(new_photo("ann", 1), who="t")
    with open_database(database_url, create=False) as database:
        assert database.people() == {"ann": 1}


def test_a_missing_file_without_create_names_it(tmp_path):
    path = tmp_path / "none.db"
    with pytest.raises(DatabaseError, match="no such gallery database") as caught:
        open_database(f"sqlite:///{path}", create=False)
    assert str(path) in str(caught.value) and not path.exists()


# -- opening: files and databases that are not ours, or are damaged


def filled_database(path: Path) -> None:
    """A valid gallery with enough rows to span many pages."""
    with open_database(f"sqlite:///{path}") as database:
        database.import_vectors(((f"p{i % 50}", vec(i)) for i in range(2000)), who="t", encoder=ENCODER)


def test_a_truncated_file_is_refused_by_name(tmp_path):
    path = tmp_path / "cut.db"
    filled_database(path)
    assert not Path(f"{path}-wal").exists()
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(DatabaseError, match=r": truncated: \d+ bytes, but its header says \d+ pages") as caught:
        open_database(f"sqlite:///{path}")
    assert str(path) in str(caught.value)


def test_a_png_renamed_db_is_refused_by_name(tmp_path):
    path = tmp_path / "photo.db"
    png = images.encode_compressed(np.zeros((64, 64, 3), np.uint8), "png")
    path.write_bytes(png)
    with pytest.raises(DatabaseError, match="not a SQLite database") as caught:
        open_database(f"sqlite:///{path}")
    assert str(path) in str(caught.value)
    assert path.read_bytes() == png


def test_another_apps_sqlite_database_is_refused_by_name(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE songs (title TEXT)")
    conn.close()
    with pytest.raises(DatabaseError, match="not a facewire gallery") as caught:
        open_database(f"sqlite:///{path}")
    assert str(path) in str(caught.value)


def test_another_apps_postgres_tables_are_refused_by_url(postgres_database_url):
    import psycopg

    with psycopg.connect(postgres_database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE songs (title TEXT)")
    with pytest.raises(DatabaseError, match="not a facewire gallery") as caught:
        open_database(postgres_database_url)
    assert postgres_database_url in str(caught.value)


def test_a_meta_table_of_another_format_is_refused(database_url):
    with open_database(database_url) as database, database.transaction(write=True) as tx:
        tx.run("UPDATE meta SET value = 'something-else' WHERE key = 'format'")
    with pytest.raises(DatabaseError, match="not a facewire gallery") as caught:
        open_database(database_url)
    assert _named(database_url) in str(caught.value)


@pytest.mark.parametrize("version, message", [("2", "schema version 2 is not the one"), ("x1", "unknown gallery schema")])
def test_a_newer_or_unknown_schema_version_is_refused(database_url, version, message):
    with open_database(database_url) as database, database.transaction(write=True) as tx:
        tx.run("UPDATE meta SET value = ? WHERE key = 'schema_version'", (version,))
    with pytest.raises(DatabaseError, match=message) as caught:
        open_database(database_url)
    assert _named(database_url) in str(caught.value)


def _named(url: str) -> str:
    """How messages name a database: a SQLite file by its path, PostgreSQL by its URL."""
    return str(sqlite_path(url)) if url.startswith("sqlite") else url


def test_an_unreachable_postgres_is_a_database_error_naming_the_url():
    url = "postgresql://postgres@/facewire?host=/nonexistent-facewire-socket"
    with pytest.raises(DatabaseError, match="cannot connect") as caught:
        open_database(url)
    assert url in str(caught.value)


# -- writes and the change log


def test_add_then_read_back_people_photo_and_vectors(db):
    first = db.add_photo(new_photo("ann", 1, data=b"ann-1"), who="alice")
    second = db.add_photo(new_photo("ann", 2, data=b"ann-2"), who="alice")
    bob = db.add_photo(new_photo("bob", 3, data=None, origin="import"), who="alice")
    assert first < second < bob
    assert db.people() == {"ann": 2, "bob": 1}
    assert db.first_photo("ann") == b"ann-1"
    assert db.first_photo("bob") is None and db.first_photo("nobody") is None
    snap = db.snapshot(ENCODER)
    assert snap.photo_ids.tolist() == [first, second, bob] and snap.names == ["ann", "ann", "bob"]
    assert snap.vectors.dtype == np.float32 and np.array_equal(snap.vectors, np.array([vec(1), vec(2), vec(3)]))
    assert db.snapshot("other").vectors.shape == (0, 128)


def test_the_name_is_checked_and_normalised(db):
    with pytest.raises(ValueError, match="must not contain"):
        db.add_photo(new_photo("../etc", 1), who="t")
    db.add_photo(new_photo("  Zoe\u0301 ", 1), who="t")
    assert db.people() == {"Zo\u00e9": 1}


@pytest.mark.parametrize("bad", [
    {"vector": np.ones(127)}, {"vector": np.full(128, np.nan)}, {"origin": "folder:host:relative"},
    {"origin": "web"}, {"faces": 0}])
def test_a_bad_photo_changes_nothing(db, bad):
    db.add_photo(new_photo("ann", 1), who="t")
    good = new_photo("bob", 2)
    with pytest.raises(ValueError):
        db.add_photo(NewPhoto(**{**good.__dict__, **bad}), who="t")
    assert db.people() == {"ann": 1} and db.last_seq() == 1 and len(log_rows(db)) == 1


def test_every_add_and_remove_logs_one_row_in_order(db):
    ids = [db.add_photo(new_photo(name, i), who="w1") for i, name in enumerate(["ann", "ann", "bob", "cy"])]
    assert db.remove_photos([ids[2], 999_999], who="w2") == 1
    assert db.remove_person("ann", who="w3") == 2
    rows = log_rows(db)
    assert [row[0] for row in rows] == sorted(row[0] for row in rows) and len({row[0] for row in rows}) == 7
    assert [row[1:] for row in rows] == [
        ("add", ids[0], "ann", "w1"), ("add", ids[1], "ann", "w1"), ("add", ids[2], "bob", "w1"),
        ("add", ids[3], "cy", "w1"), ("remove", ids[2], "bob", "w2"),
        ("remove", ids[0], "ann", "w3"), ("remove", ids[1], "ann", "w3")]
    assert db.last_seq() == rows[-1][0]
    assert db.people() == {"cy": 1}


def test_removing_a_person_takes_photos_of_every_origin(db):
    db.add_photo(new_photo("ann", 1), who="t")
    db.add_photo(new_photo("ann", 2, origin="import", data=None), who="t")
    db.add_photo(new_photo("ann", 3, origin="folder:h:/photos"), who="t")
    db.add_photo(new_photo("bob", 4), who="t")
    assert db.remove_person("ann", who="t") == 3
    assert db.remove_person("ann", who="t") == 0
    assert db.people() == {"bob": 1} and db.snapshot(ENCODER).names == ["bob"]
    assert db.stats().photos == 1


def test_removing_the_last_photo_removes_the_person(db):
    keep = db.add_photo(new_photo("ann", 1), who="t")
    gone = db.add_photo(new_photo("bob", 2), who="t")
    assert db.remove_photos([gone], who="t") == 1
    assert db.people() == {"ann": 1}
    assert db.remove_photos([keep, keep], who="t") == 1
    assert db.people() == {}


def test_a_snapshot_plus_the_changes_since_equals_a_later_snapshot(db):
    ids = [db.add_photo(new_photo(f"p{i % 3}", i), who="t") for i in range(6)]
    before = db.snapshot(ENCODER)
    assert before.seq == db.last_seq() == 6
    db.remove_photos(ids[:2], who="t")
    db.add_photo(new_photo("p9", 9), who="t")
    removed_later = db.add_photo(new_photo("p9", 10), who="t")
    db.remove_photos([removed_later], who="t")
    changes = db.changes_since(before.seq, ENCODER)
    assert [c.seq for c in changes] == list(range(before.seq + 1, before.seq + 6))
    assert [c.op for c in changes] == ["remove", "remove", "add", "add", "remove"]
    assert changes[3].vector is None  # added then removed: no vector left to give
    state = {int(p): (n, v.tolist()) for p, n, v in zip(before.photo_ids, before.names, before.vectors)}
    for change in changes:
        if change.op == "remove":
            state.pop(change.photo_id, None)
        elif change.vector is not None:
            state[change.photo_id] = (change.name, change.vector.tolist())
    after = db.snapshot(ENCODER)
    assert state == {int(p): (n, v.tolist()) for p, n, v in zip(after.photo_ids, after.names, after.vectors)}
    assert db.changes_since(after.seq, ENCODER) == []


def test_photos_needing_another_encoder_and_storing_its_encodings(db):
    photo = db.add_photo(new_photo("ann", 1, data=b"ann"), who="t")
    faceless = db.add_photo(new_photo("bob", 2, data=b"bob"), who="t")
    db.add_photo(new_photo("cy", 3, data=None, origin="import"), who="t")
    db.add_photo(new_photo("dee", 4, data=b"dee", encoder="onnx"), who="t")
    needing = db.photos_needing("onnx")
    assert [(p.photo_id, p.name, p.data) for p in needing] == [(photo, "ann", b"ann"), (faceless, "bob", b"bob")]
    seq = db.last_seq()
    db.store_encoding(photo, "onnx", 2, vec(7), who="reencode")
    db.store_encoding(faceless, "onnx", 0, None, who="reencode")
    assert db.photos_needing("onnx") == [] and len(db.photos_needing(ENCODER)) == 1
    changes = db.changes_since(seq, "onnx")
    assert [(c.op, c.photo_id, c.name) for c in changes] == [("add", photo, "ann")]
    assert np.array_equal(changes[0].vector, vec(7))
    assert db.snapshot("onnx").names == ["ann", "dee"]
    assert db.stats().encoders == ["fake", "onnx"]


def test_stats(db):
    db.add_photo(new_photo("ann", 1), who="t")
    db.add_photo(new_photo("ann", 2), who="t")
    db.import_vectors([("bob", vec(3)), ("cy", vec(4))], who="t", encoder="onnx")
    stats = db.stats()
    assert (stats.people, stats.photos, stats.without_bytes, stats.encoders) == (3, 4, 2, ["fake", "onnx"])
    assert stats.size_bytes > 0


# -- import and export


def test_import_then_export_round_trips(db):
    rows = [(f"p{i % 7}", vec(i)) for i in range(10_000)]
    assert db.import_vectors(iter(rows), who="importer", encoder=ENCODER) == len(rows)
    exported = list(db.export(ENCODER))
    assert [name for name, _ in exported] == [name for name, _ in rows]
    assert all(np.array_equal(v, vec(i)) for i, (_, v) in enumerate(exported))
    log = log_rows(db)
    assert len(log) == len(rows) and {row[1] for row in log} == {"add"} and {row[4] for row in log} == {"importer"}
    assert [row[3] for row in log] == [name for name, _ in rows]
    assert db.stats().without_bytes == len(rows) and db.people()["p0"] == 1429
    assert len(db.snapshot(ENCODER).photo_ids) == len(rows)


@pytest.mark.parametrize("bad", [("p1", np.ones(127)), ("", vec(0)), ("p1", [float("inf")] * 128)])
def test_an_import_with_one_bad_row_imports_nothing(db, bad, monkeypatch):
    monkeypatch.setattr(database, "IMPORT_CHUNK", 1000)  # so chunks before the bad row were written
    db.add_photo(new_photo("ann", 1), who="t")
    seq = db.last_seq()
    rows = [(f"p{i % 300}", vec(i)) for i in range(10_000)]
    rows[6_543] = bad
    with pytest.raises(ValueError, match="import row 6544"):
        db.import_vectors(iter(rows), who="t", encoder=ENCODER)
    assert db.people() == {"ann": 1} and db.last_seq() == seq and len(log_rows(db)) == 1
    assert db.import_vectors(iter(rows[:10]), who="t", encoder=ENCODER) == 10
    assert db.snapshot(ENCODER).photo_ids.tolist() == sorted(db.snapshot(ENCODER).photo_ids.tolist())


# -- the folder sync's bookkeeping (the sync's own rules are in test_sync.py)


def test_record_and_forget_files_touch_only_their_origin(db):
    origin = "folder:h:/photos"
    api = db.add_photo(new_photo("ann", 1), who="t")
    added = db.record_file(origin, FileRecord("bob/a.jpg", 10, 20, "sha2"), new_photo("bob", 2, origin=origin))
    db.record_file(origin, FileRecord("ann/mirror.jpg", 10, 20, "sha1", api))
    assert db.folder_files(origin) == {"bob/a.jpg": FileRecord("bob/a.jpg", 10, 20, "sha2", added),
                                       "ann/mirror.jpg": FileRecord("ann/mirror.jpg", 10, 20, "sha1", api)}
    assert db.folder_files("folder:other:/photos") == {}
    assert db.api_photo("ann", "sha1") == api and db.api_photo("bob", "sha2") is None
    assert db.forget_file(origin, "ann/mirror.jpg") == 0
    assert db.forget_file(origin, "bob/a.jpg") == 1
    assert db.people() == {"ann": 1} and db.folder_files(origin) == {}


# -- notifications


def test_a_listener_hears_each_committed_change_and_nothing_else(database_url):
    with open_database(database_url) as writer, open_database(database_url) as reader:
        listener = reader.listen()
        try:
            assert listener.wait(0.2) is None
            photo = writer.add_photo(new_photo("ann", 1), who="t")
            assert listener.wait(10) == writer.last_seq() == 1
            with pytest.raises(ValueError):
                writer.add_photo(new_photo("bob", 2, faces=0), who="t")
            assert listener.wait(0.3) is None
            writer.remove_photos([photo], who="t")
            assert listener.wait(10) == 2
        finally:
            listener.close()


# -- durability: a kill -9 loses nothing acknowledged and leaves nothing half done

CHILD = """
import sys
import numpy as np
from facewire.store.database import NewPhoto, open_database
url, start, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open_database(url) as db:
    for i in range(start, stop):
        pid = db.add_photo(NewPhoto(f"p{i}", b"x" * 2000, str(i), "api", "fake", 1, np.full(128, i)), who="burst")
        print(i, pid, flush=True)
"""
TOTAL = 150
KILLS = 6


def run_child(url: str, start: int, kill_after: int | None) -> list[tuple[int, int]]:
    """Add photos start..TOTAL in a child, SIGKILLed after `kill_after` acknowledgements; the acknowledged (i, id)."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, url, str(start), str(TOTAL)], cwd=ROOT,
                             stdout=subprocess.PIPE, text=True)
    acked = []
    try:
        while kill_after is None or len(acked) < kill_after:
            line = child.stdout.readline()
            if not line:
                break
            acked.append(tuple(map(int, line.split())))
        child.kill()
        acked += [tuple(map(int, line.split())) for line in child.stdout]  # printed before the kill landed
    finally:
        child.kill()
        child.wait(timeout=60)
        child.stdout.close()
    return acked


def test_acknowledged_adds_survive_kill_9_and_nothing_else_appears(database_url):
    rng = random.Random(20261130)
    acked: dict[int, int] = {}
    in_flight: set[int] = set()
    start = 0
    for kill in range(KILLS + 1):
        kill_after = None if kill == KILLS else rng.randint(0, 25)
        round_acked = run_child(database_url, start, kill_after)
        assert [i for i, _ in round_acked] == list(range(start, start + len(round_acked)))
        acked.update(round_acked)
        with open_database(database_url) as db:
            stored = {int(name[1:]): count for name, count in db.people().items()}
            ids = set(db.snapshot("fake").photo_ids.tolist())
        assert set(acked.values()) <= ids and set(acked) <= set(stored), "an acknowledged add was lost"
        unacknowledged = set(stored) - set(acked) - in_flight
        assert unacknowledged <= {start + len(round_acked)}, f"adds beyond the one in flight: {unacknowledged}"
        in_flight |= unacknowledged
        assert len(ids) == len(stored) == sum(stored.values())
        start = max(stored, default=-1) + 1
    assert stored == {i: 1 for i in range(TOTAL)}, "every input exactly once"
    if database_url.startswith("sqlite"):
        with sqlite3.connect(sqlite_path(database_url)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        conn.close()
