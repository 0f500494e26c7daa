"""`facewire-gallery` run as a real command (`python -m facewire.gallery`) on SQLite and PostgreSQL:
import, export, list, stats, and its refusals (exit status 2, one message, nothing imported or created)."""

from __future__ import annotations

import getpass
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facewire.config import default_db_url
from facewire.faces.settings import DetectorSettings
from facewire.process import ROOT
from facewire.store.database import IMPORTED, NewPhoto, open_database
from facewire.store.transfer import read_encodings, write_encodings

pytest_plugins = ("tests.postgres",)

REFUSED = 2


def gallery(*args: object, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run `python -m facewire.gallery ARGS` and capture its output."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "facewire.gallery", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def refused(done: subprocess.CompletedProcess) -> str:
    """The refusal's message, once checked that it is one: exit status 2, no traceback, nothing on stdout."""
    assert done.returncode == REFUSED, done
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert done.stderr.startswith("facewire-gallery: ")
    return done.stderr


def ok(done: subprocess.CompletedProcess) -> list[str]:
    """The lines of a successful run's output."""
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def faces(names: list[str], seed: int) -> tuple[list[str], np.ndarray]:
    """Names and real-looking encodings: random float32 rows scaled to norms around 1.4, as dlib's are."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(len(names), 128))
    norms = rng.uniform(1.3, 1.5, size=(len(names), 1))
    return names, (vectors / np.linalg.norm(vectors, axis=1, keepdims=True) * norms).astype(np.float32)


def written(path: Path, names: list[str], seed: int) -> tuple[list[str], np.ndarray]:
    """Write a file of encodings with transfer.write_encodings; returns what it holds."""
    rows = faces(names, seed)
    write_encodings(path, rows)
    return rows


def empty_gallery(url: str) -> str:
    """Create the (empty) gallery at `url`, as the server does at start."""
    open_database(url).close()
    return url


def listed(url: str) -> list[str]:
    return ok(gallery("list", "--db", url))


def change_authors(url: str) -> set[str]:
    """Who the change log says made the changes."""
    with open_database(url) as db, db.transaction() as tx:
        return {row[0] for row in tx.all("SELECT DISTINCT who FROM changes")}


def test_default_database_is_dot_facewire_db_in_the_known_faces_folder(tmp_path):
    (tmp_path / "faces").mkdir()
    written(tmp_path / "a.npz", ["ada"], seed=1)
    out = ok(gallery("import", "a.npz", "--known-faces", "faces", cwd=tmp_path))
    assert f"into sqlite:///{tmp_path / 'faces' / '.facewire.db'} (" in out[0]
    assert default_db_url(tmp_path / "faces") == f"sqlite:///{tmp_path / 'faces' / '.facewire.db'}"
    assert ok(gallery("list", "--known-faces", tmp_path / "faces")) == ["ada  1", "total: 1 person, 1 photo"]


def test_import_npz_and_csv_then_list_and_stats(database_url, tmp_path):
    written(tmp_path / "first.npz", ["alice"] * 3 + ["bob"] * 2, seed=1)
    written(tmp_path / "second.csv", ["carol", "alice"], seed=2)
    first = ok(gallery("import", tmp_path / "first.npz", "--db", database_url))
    second = ok(gallery("import", tmp_path / "second.csv", "--db", database_url, "--who", "ops"))
    assert re.fullmatch(rf"imported 5 encodings of 2 people from {tmp_path / 'first.npz'} into \S+ \(\d+\.\d\d s\)",
                        first[0])
    assert second[0].startswith(f"imported 2 encodings of 2 people from {tmp_path / 'second.csv'} into ")
    assert change_authors(database_url) == {getpass.getuser(), "ops"}
    assert listed(database_url) == ["alice  4", "bob    2", "carol  1", "total: 3 people, 7 photos"]
    stats = ok(gallery("stats", "--db", database_url))
    assert stats[:6] == [f"database:       {database_url}", "schema version: 1", "people:         3",
                         "photos:         7", "imported:       7 encodings with no photo, kept whatever the encoder",
                         "encoders:       imported"]
    assert re.fullmatch(r"size:           \d+(\.\d (KiB|MiB)| bytes)", stats[6]) and len(stats) == 7


def test_stats_show_the_url_with_its_password_redacted(postgres_database_url, tmp_path):
    url = empty_gallery(postgres_database_url.replace("postgres@", "postgres:s3cret@", 1))
    stats = ok(gallery("stats", "--db", url))
    assert stats[0] == f"database:       {url.replace(':s3cret@', ':***@')}"
    assert "s3cret" not in "\n".join(stats) and "people:         0" in stats


def test_export_round_trip_in_photo_order_imported_and_default_encoder(database_url, tmp_path):
    server_tag = DetectorSettings().encoding_tag()
    names, vectors = written(tmp_path / "first.npz", ["alice", "alice", "bob"], seed=1)
    ok(gallery("import", tmp_path / "first.npz", "--db", database_url))
    extra_names, extra = faces(["carol", "dave"], seed=2)
    with open_database(database_url) as db:
        db.add_photo(NewPhoto("carol", b"jpeg", "sha-carol", "api", server_tag, 1, extra[0]), who="test")
        db.add_photo(NewPhoto("dave", b"jpeg", "sha-dave", "api", "an-older-encoder", 1, extra[1]), who="test")
    last_names, last = written(tmp_path / "last.csv", ["erin"], seed=3)
    ok(gallery("import", tmp_path / "last.csv", "--db", database_url))
    expected_names = [*names, "carol", *last_names]
    expected = np.concatenate([vectors, extra[:1], last])
    for name in ("out.npz", "out.csv"):
        out = ok(gallery("export", tmp_path / name, "--db", database_url))
        assert out[0].startswith(f"exported 5 encodings of 4 people (encoders: {IMPORTED}, {server_tag}) from ")
        exported = read_encodings(tmp_path / name)
        assert list(exported.names) == expected_names
        assert np.array_equal(exported.encodings.astype(np.float32), expected)
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    ok(gallery("import", tmp_path / "out.csv", "--db", fresh))
    ok(gallery("export", tmp_path / "again.npz", "--db", fresh))
    again = read_encodings(tmp_path / "again.npz")
    assert list(again.names) == expected_names and np.array_equal(again.encodings, expected)
    ok(gallery("export", tmp_path / "older.csv", "--db", database_url, "--encoder", "an-older-encoder"))
    older = read_encodings(tmp_path / "older.csv")
    assert older.names == (*names, "dave", *last_names)  # that encoder's vectors, and the imported ones
    assert np.array_equal(older.encodings.astype(np.float32), np.concatenate([vectors, extra[1:], last]))


PICKLE = b"\x80\x04\x95" + bytes(16)
"""The first bytes of a protocol 4 pickle: enough for the refusal, which never loads one."""


def test_pickles_are_refused_and_nothing_imported(database_url, tmp_path):
    empty_gallery(database_url)
    for name in ("encodings.pkl", "disguised.npz"):
        (tmp_path / name).write_bytes(PICKLE)
        message = refused(gallery("import", tmp_path / name, "--db", database_url))
        assert message.startswith(f"facewire-gallery: {tmp_path / name}: this ") and "never unpickles" in message
    assert listed(database_url) == ["total: 0 people, 0 photos"]


def test_a_bad_row_is_named_and_nothing_imported(database_url, tmp_path):
    empty_gallery(database_url)
    written(tmp_path / "zero.csv", ["ann", "ben", "cat", "dan"], seed=1)
    lines = (tmp_path / "zero.csv").read_text().splitlines()
    lines[3] = "cat," + ",".join(["0"] * 128)
    (tmp_path / "zero.csv").write_text("\n".join(lines) + "\n")
    message = refused(gallery("import", tmp_path / "zero.csv", "--db", database_url))
    assert message.startswith(f"facewire-gallery: {tmp_path / 'zero.csv'}: line 4: encoding norm 0 is outside")
    names, vectors = faces(["ann", "ben", "../etc", "dan"], seed=2)
    np.savez(tmp_path / "name.npz", names=np.array(names), encodings=vectors)
    message = refused(gallery("import", tmp_path / "name.npz", "--db", database_url))
    assert message.startswith(f"facewire-gallery: {tmp_path / 'name.npz'}: index 2: bad name '../etc'")
    assert listed(database_url) == ["total: 0 people, 0 photos"]


REFUSE_ZOE = {
    "sqlite": ["CREATE TRIGGER refuse_zoe BEFORE INSERT ON people WHEN NEW.name = 'zoe' "
               "BEGIN SELECT RAISE(ABORT, 'the test refuses zoe'); END"],
    "postgresql": ["CREATE FUNCTION refuse_zoe() RETURNS trigger LANGUAGE plpgsql AS "
                   "$$ BEGIN RAISE EXCEPTION 'the test refuses zoe'; END $$",
                   "CREATE TRIGGER refuse_zoe BEFORE INSERT ON people FOR EACH ROW WHEN (NEW.name = 'zoe') "
                   "EXECUTE FUNCTION refuse_zoe()"],
}
"""A trigger that fails the insert of person zoe: the database failing in the middle of an import."""


def test_a_database_failure_mid_import_imports_nothing(database_url, tmp_path):
    with open_database(database_url) as db, db.transaction(write=True) as tx:
        for statement in REFUSE_ZOE[database_url.split(":", 1)[0]]:
            tx.run(statement)
    written(tmp_path / "three.npz", ["alice", "alice", "bob", "zoe"], seed=1)
    assert "the test refuses zoe" in refused(gallery("import", tmp_path / "three.npz", "--db", database_url))
    assert listed(database_url) == ["total: 0 people, 0 photos"]


MISSING = "no gallery database at {path} (the server creates it at start, or import one)"


def test_a_missing_database_is_named_and_not_created(tmp_path):
    (tmp_path / "faces").mkdir()
    default = tmp_path / "faces" / ".facewire.db"
    other = tmp_path / "elsewhere.db"
    for command in (["list"], ["stats"], ["export", tmp_path / "out.npz"]):
        assert refused(gallery(*command, "--known-faces", tmp_path / "faces")) == \
            f"facewire-gallery: {MISSING.format(path=default)}\n"
        assert refused(gallery(*command, "--db", f"sqlite:///{other}")) == \
            f"facewire-gallery: {MISSING.format(path=other)}\n"
    (tmp_path / "encodings.pkl").write_bytes(PICKLE)
    refused(gallery("import", tmp_path / "encodings.pkl", "--known-faces", tmp_path / "faces"))
    assert not default.exists() and not other.exists() and not (tmp_path / "out.npz").exists()


def broken_files(folder: Path) -> dict[Path, str]:
    """A truncated copy of a real gallery, and a PNG renamed .db: each with the refusal it gets."""
    with open_database(f"sqlite:///{folder / 'whole.db'}") as db:
        db.import_vectors(zip(*faces(["ann"] * 40, seed=1)), who="test", encoder=IMPORTED)
    whole = (folder / "whole.db").read_bytes()
    (folder / "truncated.db").write_bytes(whole[:len(whole) // 2])
    Image.new("RGB", (16, 16), "red").save(folder / "picture.db", format="PNG")
    return {folder / "truncated.db": "truncated: ", folder / "picture.db": "not a SQLite database"}


def test_broken_database_files_are_refused_without_a_traceback(tmp_path):
    written(tmp_path / "ok.npz", ["ann"], seed=2)
    for path, problem in broken_files(tmp_path).items():
        before = path.read_bytes()
        for command in (["list"], ["stats"], ["export", tmp_path / "out.npz"], ["import", tmp_path / "ok.npz"]):
            message = refused(gallery(*command, "--db", f"sqlite:///{path}"))
            assert message.startswith(f"facewire-gallery: {path}: {problem}"), message
        assert path.read_bytes() == before and not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize("command, summary", [
    ("import", "import known encodings from an .npz or .csv file."),
    ("export", "export the gallery's encodings to an .npz or .csv file."),
    ("list", "list the people in the gallery and their photo counts."),
    ("stats", "show the gallery's counts, encoders, size and schema version."),
])
def test_each_subcommand_says_what_it_does_and_shows_an_example(command, summary):
    out = ok(gallery(command, "--help"))
    assert summary in out and "example:" in out
    assert out[out.index("example:") + 1].startswith(f"  facewire-gallery {command}")
