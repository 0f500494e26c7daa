"""Known encodings in and out of files: round trips, every refusal, row numbers, pickles never loaded, atomic writes."""

from __future__ import annotations

import csv
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from facewire.store import transfer
from facewire.store.names import BadName, check_name
from facewire.store.transfer import MAX_NORM, MIN_NORM, TransferError, read_encodings, write_encodings

NAMES = ["grace_hopper", "José Ñúñez", "李小龍", "O'Brien, \"Pat\""]


def faces(count: int, dtype=np.float32, seed: int = 0) -> np.ndarray:
    """`count` random vectors with the norm of a real dlib encoding (about 1.4)."""
    matrix = np.random.default_rng(seed).normal(size=(count, 128))
    return (matrix * (1.4 / np.linalg.norm(matrix, axis=1))[:, None]).astype(dtype)


def people(count: int) -> list[str]:
    return [NAMES[i % len(NAMES)] for i in range(count)]


def csv_file(path: Path, rows: list[list[object]], header: bool = False) -> Path:
    """A CSV written by hand (not by write_encodings), so tests can put anything in it."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        if header:
            writer.writerow(["name", *range(128)])
        writer.writerows(rows)
    return path


def good_rows(count: int) -> list[list[object]]:
    return [[name, *vector] for name, vector in zip(people(count), faces(count, np.float64).tolist())]


def refused(path: Path) -> TransferError:
    with pytest.raises(TransferError) as caught:
        read_encodings(path)
    assert str(path) in str(caught.value)
    return caught.value


# --- round trips -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("count", [0, 1, 5])
def test_npz_round_trip_is_exact(tmp_path, dtype, count):
    names, matrix = people(count), faces(count, dtype)
    assert write_encodings(tmp_path / "known.npz", (names, matrix)) == count
    back = read_encodings(tmp_path / "known.npz")
    assert back.names == tuple(names)
    assert back.encodings.dtype == dtype and back.encodings.shape == (count, 128)
    np.testing.assert_array_equal(back.encodings, matrix)


@pytest.mark.parametrize("count", [0, 1, 5])
def test_csv_round_trip_keeps_every_float(tmp_path, count):
    names, matrix32 = people(count), faces(count, np.float32)
    write_encodings(tmp_path / "a.csv", (names, matrix32))
    back = read_encodings(tmp_path / "a.csv")
    assert back.names == tuple(names) and back.encodings.shape == (count, 128)
    np.testing.assert_array_equal(back.encodings.astype(np.float32), matrix32)
    np.testing.assert_allclose(back.encodings, matrix32, rtol=1e-7)
    matrix64 = faces(count, np.float64, seed=1)
    write_encodings(tmp_path / "b.csv", (names, matrix64))
    np.testing.assert_array_equal(read_encodings(tmp_path / "b.csv").encodings, matrix64)


def test_csv_is_a_name_then_128_numbers_under_a_header(tmp_path):
    write_encodings(tmp_path / "known.csv", (["José Ñúñez"], faces(1)))
    with open(tmp_path / "known.csv", encoding="utf-8", newline="") as f:
        header, row = list(csv.reader(f))
    assert header[0] == "name" and len(header) == 129
    assert row[0] == "José Ñúñez" and len(row) == 129 and np.float32(row[1]) == faces(1)[0, 0]


def test_rows_as_name_encoding_pairs(tmp_path):
    matrix = faces(3, np.float64)
    pairs = [("ada", matrix[0].tolist()), ("bob", matrix[1]), ("ada", matrix[2])]
    assert write_encodings(tmp_path / "known.npz", iter(pairs)) == 3
    back = read_encodings(tmp_path / "known.npz")
    assert back.names == ("ada", "bob", "ada")
    np.testing.assert_array_equal(back.encodings, matrix)


def test_a_read_file_writes_back_as_is(tmp_path):
    write_encodings(tmp_path / "a.npz", (people(4), faces(4)))
    write_encodings(tmp_path / "b.csv", read_encodings(tmp_path / "a.npz"))
    write_encodings(tmp_path / "c.npz", read_encodings(tmp_path / "b.csv"))
    assert read_encodings(tmp_path / "c.npz").names == tuple(people(4))


def test_names_come_back_as_check_name_returns_them(tmp_path):
    decomposed = "Jose\u0301"
    write_encodings(tmp_path / "a.npz", ([f"  {decomposed} "], faces(1)))
    assert read_encodings(tmp_path / "a.npz").names == ("Jos\u00e9",)


def test_upper_case_extensions(tmp_path):
    for name in ("A.NPZ", "B.Csv"):
        write_encodings(tmp_path / name, (["ada"], faces(1)))
        assert read_encodings(tmp_path / name).names == ("ada",)


def test_a_hundred_thousand_rows_round_trip_fast(tmp_path):
    names, matrix = [f"person {i % 5000}" for i in range(100_000)], faces(100_000)
    for suffix, limit in ((".npz", 10), (".csv", 120)):
        started = time.perf_counter()
        write_encodings(tmp_path / f"big{suffix}", (names, matrix))
        back = read_encodings(tmp_path / f"big{suffix}")
        assert time.perf_counter() - started < limit, suffix
        assert back.names == tuple(names)
        np.testing.assert_array_equal(back.encodings.astype(np.float32), matrix)


@st.composite
def valid_rows(draw) -> tuple[list[str], np.ndarray]:
    """Names check_name keeps as they are, and vectors of norm 1..1.73 (first value 1, the rest in +-0.125)."""
    names = draw(st.lists(st.text(min_size=1, max_size=30).filter(_kept_by_check_name), max_size=6))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    width = 32 if dtype == np.float32 else 64
    matrix = draw(hnp.arrays(dtype, (len(names), 128), elements=st.floats(-0.125, 0.125, width=width)))
    matrix[:, 0] = 1.0
    return names, matrix


def _kept_by_check_name(name: str) -> bool:
    try:
        return check_name(name) == name
    except BadName:
        return False


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=valid_rows())
def test_any_valid_rows_round_trip_through_both_formats(tmp_path, rows):
    names, matrix = rows
    for suffix in (".npz", ".csv"):
        write_encodings(tmp_path / f"rows{suffix}", (names, matrix))
        back = read_encodings(tmp_path / f"rows{suffix}")
        assert back.names == tuple(names)
        np.testing.assert_array_equal(back.encodings.astype(matrix.dtype), matrix)


# --- pickles: refused, never loaded ----------------------------------------------------------------


class Bomb:
    """Unpickling this creates the folder `marker`: proof that someone loaded the pickle."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def pickle_bomb(path: Path, marker: Path, protocol: int = pickle.HIGHEST_PROTOCOL) -> Path:
    """A pickle shaped like face_recognition users' files, with a Bomb inside."""
    matrix = faces(2, np.float64)
    data = {"names": ["ada", "bob"], "encodings": list(matrix), "bomb": Bomb(marker)}
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    return path


def test_the_bomb_goes_off_when_unpickled(tmp_path):
    pickle.loads(pickle_bomb(tmp_path / "p.pkl", tmp_path / "marker").read_bytes())
    assert (tmp_path / "marker").is_dir()


@pytest.mark.parametrize("name", ["known.pkl", "known.pickle", "known.PKL", "known.dat", "known.npz", "known.csv",
                                  "known"])
@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_pickles_are_refused_unread(tmp_path, name, protocol):
    marker = tmp_path / "marker"
    error = refused(pickle_bomb(tmp_path / name, marker, protocol))
    assert not marker.exists()
    assert "pickle" in error.problem and "never unpickles" in error.problem
    assert "np.savez(" in error.problem and "pickle.load(open(" in error.problem


def test_pickle_suffixes_are_refused_whatever_they_hold(tmp_path):
    (tmp_path / "protocol0.pkl").write_bytes(pickle.dumps(["ada"], protocol=0))
    assert "pickle" in refused(tmp_path / "protocol0.pkl").problem


def test_the_suggested_conversion_works(tmp_path):
    """The two lines in the message, run by the owner who trusts the pickle, give a file that imports."""
    error = refused(pickle_bomb(tmp_path / "known.pkl", tmp_path / "marker"))
    lines = error.problem.splitlines()[-2:]
    exec("\n".join(line.strip() for line in lines), {})
    assert read_encodings(tmp_path / "known.npz").names == ("ada", "bob")


@pytest.mark.parametrize("key", ["names", "encodings"])
def test_npz_object_arrays_are_refused_unread(tmp_path, key):
    marker = tmp_path / "marker"
    arrays = {"names": np.array(["ada", "bob"]), "encodings": faces(2, np.float64)}
    arrays[key] = np.array([Bomb(marker), "x"], dtype=object)
    np.savez(tmp_path / "objects.npz", **arrays)
    error = refused(tmp_path / "objects.npz")
    assert not marker.exists()
    assert f"array {key!r} holds Python objects" in error.problem and "allow_pickle=True" in error.problem


def test_npz_is_loaded_with_allow_pickle_false(tmp_path, monkeypatch):
    write_encodings(tmp_path / "known.npz", (["ada"], faces(1)))
    calls, load = [], np.load
    monkeypatch.setattr(np, "load", lambda *args, **kwargs: calls.append(kwargs) or load(*args, **kwargs))
    read_encodings(tmp_path / "known.npz")
    assert calls and all(kwargs.get("allow_pickle") is False for kwargs in calls)


def test_npy_with_objects_is_refused_unread(tmp_path):
    marker = tmp_path / "marker"
    np.save(tmp_path / "known.npy", np.array({"names": ["ada"], "bomb": Bomb(marker)}, dtype=object))
    error = refused(tmp_path / "known.npy")
    assert not marker.exists()
    assert "holds Python objects" in error.problem and ".item()" in error.problem


def test_a_plain_npy_is_refused_with_what_to_do(tmp_path):
    np.save(tmp_path / "known.npy", faces(2))
    assert "np.savez(" in refused(tmp_path / "known.npy").problem


# --- refusals: the file, the row, the problem ------------------------------------------------------


def npz(path: Path, **arrays) -> Path:
    np.savez(path, **{"names": np.array(people(5)), "encodings": faces(5, np.float64), **arrays})
    return path


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_npz_non_finite_values_are_refused_at_their_index(tmp_path, value):
    matrix = faces(5, np.float64)
    matrix[3, 77] = value
    error = refused(npz(tmp_path / "bad.npz", encodings=matrix))
    assert error.row == "index 3" and "not a finite number" in error.problem


@pytest.mark.parametrize("scale, index", [(0.0, 2), (MIN_NORM / 1.41, 4), (MAX_NORM / 1.39, 0), (255.0, 1)])
def test_implausible_norms_are_refused(tmp_path, scale, index):
    matrix = faces(5, np.float64)
    matrix[index] *= scale
    error = refused(npz(tmp_path / "bad.npz", encodings=matrix))
    assert error.row == f"index {index}" and "norm" in error.problem


def test_norm_bounds_hold_the_real_encodings_with_margin():
    """Measured on every face of the shared and repo photos: 1.32..1.59."""
    assert MIN_NORM <= 1.32 / 1.5 and MAX_NORM >= 1.59 * 1.5


def test_how_many_rows_share_the_problem(tmp_path):
    matrix = faces(5, np.float64)
    matrix[[1, 2, 4], 0] = np.nan
    error = refused(npz(tmp_path / "bad.npz", encodings=matrix))
    assert error.row == "index 1" and "2 more rows" in error.problem


@pytest.mark.parametrize("width", [127, 129])
def test_npz_wrong_width_is_refused(tmp_path, width):
    error = refused(npz(tmp_path / "bad.npz", encodings=np.full((5, width), 0.1)))
    assert f"got shape (5, {width})" in error.problem


def test_npz_strings_in_encodings_are_refused(tmp_path):
    error = refused(npz(tmp_path / "bad.npz", encodings=faces(5, np.float64).astype(str)))
    assert "float32 or float64" in error.problem and "<U" in error.problem


def test_npz_integer_encodings_are_refused(tmp_path):
    assert "float32 or float64" in refused(npz(tmp_path / "bad.npz", encodings=np.ones((5, 128), int))).problem


def test_npz_lengths_must_match(tmp_path):
    error = refused(npz(tmp_path / "bad.npz", names=np.array(people(4))))
    assert "4 names but 5 encodings" in error.problem


def test_npz_names_must_be_strings(tmp_path):
    assert "array of strings" in refused(npz(tmp_path / "bad.npz", names=np.arange(5))).problem


@pytest.mark.parametrize("missing", ["names", "encodings"])
def test_npz_needs_both_arrays(tmp_path, missing):
    arrays = {"names": np.array(people(5)), "encodings": faces(5)}
    del arrays[missing]
    np.savez(tmp_path / "bad.npz", **arrays)
    assert f"no array named {missing!r}" in refused(tmp_path / "bad.npz").problem


@pytest.mark.parametrize("bad, index", [("../etc", 2), ("", 0), ("a\x07b", 4), (".hidden", 1), ("x" * 101, 3)])
def test_npz_bad_names_are_refused_at_their_index(tmp_path, bad, index):
    names = people(5)
    names[index] = bad
    error = refused(npz(tmp_path / "bad.npz", names=np.array(names)))
    assert error.row == f"index {index}" and "bad name" in error.problem


def test_facewire_cache_is_not_an_export(tmp_path):
    """facewire's own cache has encodings but no names (and zero rows for photos without a face)."""
    np.savez(tmp_path / ".facewire-cache.npz", hashes=np.array(["ab"]), encodings=np.zeros((1, 128)))
    assert "no array named 'names'" in refused(tmp_path / ".facewire-cache.npz").problem


@pytest.mark.parametrize("content, problem", [(b"", "the file is empty"), (b"PK\x03\x04 broken", "not a readable .npz"),
                                              (b"plain text", "not an .npz file")])
def test_npz_empty_or_damaged_files(tmp_path, content, problem):
    (tmp_path / "bad.npz").write_bytes(content)
    assert problem in refused(tmp_path / "bad.npz").problem


@pytest.mark.parametrize("name", ["known.txt", "known.json", "known", "known.dat"])
def test_unknown_formats_are_refused(tmp_path, name):
    (tmp_path / name).write_text("ada,0.1\n")
    assert "unknown format" in refused(tmp_path / name).problem


@pytest.mark.parametrize("header", [False, True])
@pytest.mark.parametrize("width", [127, 129])
def test_csv_wrong_width_is_refused_at_its_line(tmp_path, header, width):
    rows = good_rows(5)
    rows[2] = rows[2][:1] + [0.1] * width
    error = refused(csv_file(tmp_path / "bad.csv", rows, header))
    assert error.row == f"line {3 + header}" and f"{width} numbers after the name, expected 128" in error.problem


@pytest.mark.parametrize("cell", ["abc", "", "0x1f", "1,5"])
def test_csv_cell_not_a_number_is_named(tmp_path, cell):
    rows = good_rows(5)
    rows[3][10] = cell
    error = refused(csv_file(tmp_path / "bad.csv", rows, header=True))
    assert error.row == "line 5" and f"column 11: {cell!r} is not a number" in error.problem


@pytest.mark.parametrize("cell", ["nan", "inf", "-Infinity"])
def test_csv_non_finite_values_are_refused_at_their_line(tmp_path, cell):
    rows = good_rows(5)
    rows[4][128] = cell
    error = refused(csv_file(tmp_path / "bad.csv", rows))
    assert error.row == "line 5" and "not a finite number" in error.problem


def test_csv_bad_name_is_refused_at_its_line(tmp_path):
    rows = good_rows(5)
    rows[1][0] = "a/b"
    error = refused(csv_file(tmp_path / "bad.csv", rows, header=True))
    assert error.row == "line 3" and "bad name 'a/b'" in error.problem


def test_csv_blank_lines_are_skipped_and_counted(tmp_path):
    rows = good_rows(3)
    rows[2][5] = "nan"
    path = tmp_path / "gaps.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([rows[0], [], rows[1], [], rows[2]])
    assert refused(path).row == "line 5"


def test_csv_header_is_optional(tmp_path):
    rows = good_rows(3)
    assert read_encodings(csv_file(tmp_path / "plain.csv", rows)).names == tuple(people(3))
    assert read_encodings(csv_file(tmp_path / "header.csv", rows, header=True)).names == tuple(people(3))
    assert read_encodings(csv_file(tmp_path / "only.csv", [], header=True)).names == ()


def test_csv_row_numbers_hold_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(transfer, "CHUNK_ROWS", 7)
    for row, problem in ((17, "nan"), (18, "oops")):
        rows = good_rows(30)
        rows[row][1] = problem
        assert refused(csv_file(tmp_path / f"bad{row}.csv", rows, header=True)).row == f"line {row + 2}"
    assert read_encodings(csv_file(tmp_path / "good.csv", good_rows(30))).names == tuple(people(30))


@pytest.mark.parametrize("content", [b"", b"\n\n", b"\r\n"])
def test_csv_empty_file_is_refused(tmp_path, content):
    (tmp_path / "empty.csv").write_bytes(content)
    assert "empty" in refused(tmp_path / "empty.csv").problem


def test_csv_not_utf8_is_refused(tmp_path):
    (tmp_path / "latin1.csv").write_bytes(b"Jos\xe9," + b"0.1," * 127 + b"0.1\n")
    assert "not UTF-8" in refused(tmp_path / "latin1.csv").problem


def test_csv_excel_bom_is_accepted(tmp_path):
    path = csv_file(tmp_path / "excel.csv", good_rows(2), header=True)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert read_encodings(path).names == tuple(people(2))


def test_nothing_is_returned_for_a_file_bad_at_its_last_row(tmp_path, monkeypatch):
    """Rows are converted chunk by chunk, but the whole file is checked before anything is returned."""
    monkeypatch.setattr(transfer, "CHUNK_ROWS", 100)
    rows = good_rows(1000)
    rows[-1][0] = "bad/name"
    assert refused(csv_file(tmp_path / "late.csv", rows)).row == "line 1000"
    names, matrix = people(1000), faces(1000)
    matrix[-1] = 0.0
    assert refused(npz(tmp_path / "late.npz", names=np.array(names), encodings=matrix)).row == "index 999"


# --- writing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".npz", ".csv"])
def test_invalid_rows_are_never_written(tmp_path, suffix):
    path = tmp_path / f"out{suffix}"
    matrix = faces(3, np.float64)
    matrix[1, 0] = np.nan
    with pytest.raises(TransferError, match=r"index 1: .*not a finite number"):
        write_encodings(path, (people(3), matrix))
    with pytest.raises(TransferError, match=r"index 2: bad name"):
        write_encodings(path, (["a", "b", "c/d"], faces(3)))
    with pytest.raises(TransferError, match=r"index 1: encoding has shape \(127,\)"):
        write_encodings(path, [("a", faces(1)[0]), ("b", faces(1)[0][:127])])
    with pytest.raises(TransferError, match=r"3 names but 2 encodings"):
        write_encodings(path, (people(3), faces(2)))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["out.pkl", "out.npy", "out.txt"])
def test_writes_only_npz_and_csv(tmp_path, name):
    with pytest.raises(TransferError, match="unknown format"):
        write_encodings(tmp_path / name, (["ada"], faces(1)))
    assert list(tmp_path.iterdir()) == []


def failing_midway(f, valid):
    """A format writer that writes part of its output, then fails as a full disk would."""
    f.write(b"partial output")
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("suffix", [".npz", ".csv"])
def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch, suffix):
    path = tmp_path / f"known{suffix}"
    write_encodings(path, (["ada"], faces(1)))
    before = path.read_bytes()
    writer = "_write_npz" if suffix == ".npz" else "_write_csv"
    monkeypatch.setattr(transfer, writer, failing_midway)
    with pytest.raises(OSError, match="No space left"):
        write_encodings(path, (people(5), faces(5)))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_failed_csv_row_mid_write_leaves_the_old_file(tmp_path, monkeypatch):
    """The real CSV writer, failing after some rows were written."""
    path = tmp_path / "known.csv"
    write_encodings(path, (["ada"], faces(1)))
    before, real_writer = path.read_bytes(), csv.writer

    class Breaks:
        def __init__(self, *args, **kwargs):
            self.writer, self.rows = real_writer(*args, **kwargs), 0

        def writerow(self, row):
            self.rows += 1
            if self.rows == 3:
                raise OSError(28, "No space left on device")
            self.writer.writerow(row)

    monkeypatch.setattr(transfer.csv, "writer", Breaks)
    with pytest.raises(OSError):
        write_encodings(path, (people(5), faces(5)))
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [path.name]
