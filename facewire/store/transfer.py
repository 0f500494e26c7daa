"""Known encodings in and out of files (`.npz`, `.csv`), each file validated whole before anything is returned.

face_recognition users keep their known encodings in files; facewire imports them without
re-encoding a photo, and exports its own. Two formats, chosen by the file's extension:

- `.npz` (`np.savez`): an array `names` (N strings) and an array `encodings` (N x 128, float32 or
  float64). Other arrays in the file are ignored. Always loaded with `allow_pickle=False`.
- `.csv` (UTF-8): one face per row, a name then 128 numbers. A first row whose first cell is
  `name` (any case) is a header and skipped; blank lines are skipped. Written with a header.

Pickles (`.pkl`, `.pickle`, or any file starting with a pickle protocol 2-5 header) and `.npy`/`.npz`
files holding Python objects are refused without being unpickled: the message shows the two lines
of Python that convert a file the user trusts. Every name passes `names.check_name` (and comes back
as it returns it: stripped, NFC); every encoding has 128 finite values and a plausible norm. A bad
file raises `TransferError`, naming the file, the row and the problem; nothing is returned partially.
"""

from __future__ import annotations

import csv
import io
import zipfile
from itertools import islice
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator, NamedTuple, Sequence

import numpy as np

from facewire.files import write_atomically
from facewire.store.names import BadName, check_name

ENCODING_SIZE = 128
MIN_NORM = 0.7
"""Smallest Euclidean norm accepted for an encoding.

dlib's encodings are not normalised: 29 faces (every face in the shared and repo photos, the
ONNX encoder, default settings) measured 1.32..1.59, mean 1.42. Half the smallest leaves a wide
margin for odd faces and still refuses the all-zero rows that stand for "no face" in facewire's own
cache, and vectors scaled down by mistake. (Unit-length embeddings of other models, norm 1, pass.)"""
MAX_NORM = 3.0
"""Largest Euclidean norm accepted: about twice the largest measured (1.59, see MIN_NORM). It refuses
pixel values, unscaled model outputs and random noise (128 uniform numbers in 0..1 have norm ~6.5)."""
CSV_HEADER = "name"
CHUNK_ROWS = 10_000
"""CSV rows converted to numbers at a time: numpy's speed without holding every cell as a string."""
PICKLE_SUFFIXES = (".pkl", ".pickle")
PICKLE_HEADERS = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")
ZIP_HEADERS = (b"PK\x03\x04", b"PK\x05\x06")
FLOAT_TYPES = (np.dtype(np.float32), np.dtype(np.float64))
NUMBER_FORMATS = {np.dtype(np.float32): "%.9g", np.dtype(np.float64): "%.17g"}
"""Enough digits that every float32 (9) or float64 (17) reads back as the same number."""


class TransferError(ValueError):
    """A file (or rows to write) facewire refuses; `path`, `row` (None for the whole file) and `problem`."""

    def __init__(self, path: Path, problem: str, row: str | None = None):
        self.path, self.problem, self.row = Path(path), problem, row
        super().__init__(f"{path}: {row}: {problem}" if row else f"{path}: {problem}")


class Encodings(NamedTuple):
    """Validated rows: `names[i]` is the person of `encodings[i]` (an N x 128 float array)."""

    names: tuple[str, ...]
    encodings: np.ndarray


Rows = Iterable[tuple[str, np.ndarray]] | tuple[Sequence[str], np.ndarray]


def read_encodings(path: Path) -> Encodings:
    """Read and validate a whole `.npz` or `.csv` file of known encodings.

    Returns names and an N x 128 matrix (float32 or float64 as stored in an `.npz`, float64
    from a `.csv`). Raises TransferError for any bad, pickled or unknown file (OSError if
    it cannot be opened)."""
    path = Path(path)
    _refuse_pickle(path)
    readers = {".npz": _read_npz, ".csv": _read_csv, ".npy": _refuse_npy}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise TransferError(path, _unknown_format(path))
    return reader(path)


def write_encodings(path: Path, rows: Rows) -> int:
    """Validate rows, then write them atomically as `.npz` or `.csv`; returns the number of rows.

    `rows` is either (name, encoding) pairs or one (names, N x 128 matrix) pair, such as
    `read_encodings` returns. Nothing is written unless every row is valid (TransferError)."""
    path = Path(path)
    writers = {".npz": _write_npz, ".csv": _write_csv}
    writer = writers.get(path.suffix.lower())
    if writer is None:
        raise TransferError(path, _unknown_format(path))
    names, matrix = _gather(path, rows)
    valid = _validated(path, names, matrix, _index)
    write_atomically(path, lambda f: writer(f, valid), prefix=f".{path.name}.")
    return len(valid.names)


def _unknown_format(path: Path) -> str:
    return (f"unknown format {path.suffix or '(no extension)'!r}: facewire reads and writes .npz "
            f"(arrays names and encodings) and .csv (a name, then {ENCODING_SIZE} numbers, per row)")


def _index(row: int) -> str:
    return f"index {row}"


# --- validation, shared by every format and by writing -------------------------------------------


def _validated(path: Path, names: Sequence[object], matrix: np.ndarray, where: Callable[[int], str]) -> Encodings:
    """Check every name and vector (shape and type first); `where(i)` says where row i is in the file."""
    _check_arrays(path, names, matrix)
    checked = _check_names(path, names, where)
    _check_vectors(path, matrix, where)
    return Encodings(checked, matrix)


def _check_arrays(path: Path, names: Sequence[object], matrix: np.ndarray) -> None:
    """One name per encoding, and encodings an N x 128 matrix of floats."""
    if matrix.ndim != 2 or matrix.shape[1] != ENCODING_SIZE:
        raise TransferError(path, f"encodings must be N x {ENCODING_SIZE}, got shape {matrix.shape}")
    if matrix.dtype not in FLOAT_TYPES:
        raise TransferError(path, f"encodings must be float32 or float64 numbers, got dtype {matrix.dtype}")
    if len(names) != len(matrix):
        raise TransferError(path, f"{len(names)} names but {len(matrix)} encodings: they must pair up")


def _check_names(path: Path, names: Iterable[object], where: Callable[[int], str]) -> tuple[str, ...]:
    """Every name through `check_name`, each distinct name once (a person usually has many rows)."""
    seen: dict[object, str] = {}
    checked = []
    for row, name in enumerate(names):
        if name not in seen:
            try:
                seen[name] = check_name(name)
            except BadName as exc:
                raise TransferError(path, f"bad name {_shown(name)}: {exc}", where(row)) from None
        checked.append(seen[name])
    return tuple(checked)


def _shown(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _check_vectors(path: Path, matrix: np.ndarray, where: Callable[[int], str]) -> None:
    """Every value finite, every norm within MIN_NORM..MAX_NORM: vectorised, whole matrix at once."""
    _refuse_rows(path, ~np.isfinite(matrix).all(axis=1), where,
                 lambda row: "an encoding value is not a finite number (NaN or infinity)")
    norms = np.sqrt(np.einsum("ij,ij->i", matrix, matrix))
    _refuse_rows(path, (norms < MIN_NORM) | (norms > MAX_NORM), where,
                 lambda row: f"encoding norm {norms[row]:.4g} is outside {MIN_NORM}..{MAX_NORM} "
                             "(not a dlib face encoding)")


def _refuse_rows(path: Path, bad: np.ndarray, where: Callable[[int], str], problem: Callable[[int], str]) -> None:
    """Raise for the first row flagged in `bad`, saying how many others share the problem."""
    count = int(bad.sum())
    if count:
        row = int(np.argmax(bad))
        more = f" ({count - 1} more rows like it)" if count > 1 else ""
        raise TransferError(path, problem(row) + more, where(row))


def _gather(path: Path, rows: Rows) -> tuple[Sequence[object], np.ndarray]:
    """Names and one matrix, from a (names, matrix) pair or from (name, encoding) pairs."""
    if isinstance(rows, tuple) and len(rows) == 2 and isinstance(rows[1], np.ndarray) and rows[1].ndim == 2:
        return list(rows[0]), rows[1]
    names, vectors = [], []
    for row, (name, vector) in enumerate(rows):
        vector = np.asarray(vector)
        if vector.shape != (ENCODING_SIZE,):
            raise TransferError(path, f"encoding has shape {vector.shape}, expected ({ENCODING_SIZE},)", _index(row))
        names.append(name)
        vectors.append(vector)
    return names, np.array(vectors) if vectors else np.empty((0, ENCODING_SIZE))


# --- pickles: refused, never loaded ----------------------------------------------------------------


def _refuse_pickle(path: Path) -> None:
    """Refuse pickles by name or by their first bytes, and empty files; reads 4 bytes at most."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise _pickle_refusal(path, "this is a pickle file", _PICKLE_LOAD)
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise TransferError(path, "the file is empty")
    if head[:2] in PICKLE_HEADERS:
        raise _pickle_refusal(path, f"this file is a pickle (protocol {head[1]})", _PICKLE_LOAD)


_PICKLE_LOAD = ('import pickle, numpy as np; data = pickle.load(open({path!r}, "rb")); '
                'names, encodings = data["names"], data["encodings"]')
_NPZ_LOAD = ('import numpy as np; data = np.load({path!r}, allow_pickle=True); '
             'names, encodings = list(data["names"]), list(data["encodings"])')
_NPY_LOAD = ('import numpy as np; data = np.load({path!r}, allow_pickle=True).item(); '
             'names, encodings = data["names"], data["encodings"]')


def _pickle_refusal(path: Path, what: str, load: str) -> TransferError:
    """The refusal of pickled data, with the two lines that convert a file its owner trusts."""
    target = path.with_suffix(".npz")
    if target == path:
        target = path.with_name(f"{path.stem}-converted.npz")
    save = (f"np.savez({str(target)!r}, names=np.array(names, dtype=str), "
            "encodings=np.array(encodings, dtype=np.float64))")
    return TransferError(path, (
        f"{what}; facewire never unpickles data, because loading a pickle can run any code. "
        "If you trust this file, convert it with these two lines of Python (adapt the first one "
        "if your file holds the names and encodings differently), then import the .npz:\n"
        f"    {load.format(path=str(path))}\n    {save}"))


def _header_dtype(f: IO[bytes]) -> np.dtype:
    """The dtype in an .npy header, read without loading the array (ValueError if not .npy)."""
    version = np.lib.format.read_magic(f)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    return read(f)[2]


def _refuse_npy(path: Path) -> Encodings:
    """A .npy holds one array, never names and encodings together: refused, as a pickle if it holds objects."""
    try:
        with open(path, "rb") as f:
            has_objects = _header_dtype(f).hasobject
    except ValueError as exc:
        raise TransferError(path, f"not a readable .npy file ({exc})") from None
    if has_objects:
        raise _pickle_refusal(path, "this .npy holds Python objects (pickled)", _NPY_LOAD)
    raise TransferError(path, "a .npy file holds one array; save names and encodings together with "
                              "np.savez(PATH.npz, names=names, encodings=encodings)")


# --- .npz ------------------------------------------------------------------------------------------


def _read_npz(path: Path) -> Encodings:
    """The arrays `names` and `encodings` of an .npz (never unpickled), validated."""
    with open(path, "rb") as f:
        if f.read(4) not in ZIP_HEADERS:
            raise TransferError(path, "not an .npz file (np.savez writes a zip archive of arrays)")
    names, matrix = _load_npz(path)
    if names.ndim != 1 or names.dtype.kind != "U":
        raise TransferError(path, f"names must be a 1-D array of strings, got {names.dtype} of shape {names.shape}")
    return _validated(path, names.tolist(), matrix, _index)


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The two arrays, loaded with allow_pickle=False; a damaged archive is a TransferError."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return _npz_array(path, data, "names"), _npz_array(path, data, "encodings")
    except TransferError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        raise TransferError(path, f"not a readable .npz file ({exc})") from None


def _npz_array(path: Path, data: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
    """One array of an open .npz, its header checked for Python objects before it is loaded."""
    if key not in data.files:
        raise TransferError(path, f"no array named {key!r} (it has {sorted(data.files)}); "
                                  f"expected names (N strings) and encodings (N x {ENCODING_SIZE})")
    with data.zip.open(f"{key}.npy") as member:
        if _header_dtype(member).hasobject:
            raise _pickle_refusal(path, f"array {key!r} holds Python objects (pickled)", _NPZ_LOAD)
    return data[key]


def _write_npz(f: IO[bytes], valid: Encodings) -> None:
    np.savez(f, names=np.array(valid.names, dtype=str), encodings=valid.encodings)


# --- .csv ------------------------------------------------------------------------------------------


def _read_csv(path: Path) -> Encodings:
    """Rows of a .csv (name, 128 numbers), converted CHUNK_ROWS at a time, then validated whole."""
    names: list[str] = []
    lines: list[int] = []
    chunks = []
    rows = _csv_rows(path)
    while chunk := list(islice(rows, CHUNK_ROWS)):
        names += [cells[0] for _, cells in chunk]
        lines += [line for line, _ in chunk]
        chunks.append(_numbers(path, chunk))
    matrix = np.concatenate(chunks) if chunks else np.empty((0, ENCODING_SIZE))
    return _validated(path, names, matrix, lambda row: f"line {lines[row]}")


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, cells) of each face row, 128 numbers wide; header and blank lines skipped.

    An empty file, one with blank lines only included, is refused (a header alone is 0 rows)."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, strict=True)
        seen_any = False
        try:
            for cells in reader:
                if not cells:
                    continue
                if not seen_any and cells[0].strip().lower() == CSV_HEADER:
                    seen_any = True
                    continue
                seen_any = True
                if len(cells) != ENCODING_SIZE + 1:
                    raise TransferError(path, f"{len(cells) - 1} numbers after the name, expected {ENCODING_SIZE}",
                                        f"line {reader.line_num}")
                yield reader.line_num, cells
        except csv.Error as exc:
            raise TransferError(path, f"not valid CSV ({exc})", f"line {reader.line_num}") from None
        except UnicodeDecodeError as exc:
            raise TransferError(path, f"not UTF-8 text ({exc.reason})", f"line {reader.line_num + 1}") from None
    if not seen_any:
        raise TransferError(path, "the file is empty (no header, no rows)")


def _numbers(path: Path, chunk: list[tuple[int, list[str]]]) -> np.ndarray:
    """The 128 numbers of each row as float64, all at once; cell by cell when one is not a number."""
    try:
        return np.array([cells[1:] for _, cells in chunk], dtype=np.float64)
    except ValueError:
        return np.array([[_number(path, line, column, cell) for column, cell in enumerate(cells[1:], start=2)]
                         for line, cells in chunk])


def _number(path: Path, line: int, column: int, cell: str) -> float:
    try:
        return float(cell)
    except ValueError:
        raise TransferError(path, f"column {column}: {_shown(cell)} is not a number", f"line {line}") from None


def _write_csv(f: IO[bytes], valid: Encodings) -> None:
    """A header, then a name and 128 numbers per row, with enough digits to read back the same floats."""
    text = io.TextIOWrapper(f, encoding="utf-8", newline="")
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow([CSV_HEADER, *(f"e{i}" for i in range(ENCODING_SIZE))])
    numbers = ",".join([NUMBER_FORMATS[valid.encodings.dtype]] * ENCODING_SIZE)
    for start in range(0, len(valid.names), CHUNK_ROWS):
        block = valid.encodings[start:start + CHUNK_ROWS].tolist()
        for name, vector in zip(valid.names[start:start + CHUNK_ROWS], block):
            writer.writerow([name, *(numbers % tuple(vector)).split(",")])
    text.flush()
    text.detach()
