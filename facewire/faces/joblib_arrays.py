"""Read a list of numpy arrays that joblib saved (its dump of a list of arrays, as an .lz4 file) without unpickling.

A joblib file is a pickle whose arrays are `NumpyArrayWrapper` objects, each followed by the array's raw
bytes outside the pickle stream. Unpickling it would run whatever the file names. This reader instead walks
the stream's opcodes (`pickletools.genops`, which only parses) on a small stack of its own, accepts only the
opcodes and the three names joblib's layout of a list of plain numeric arrays needs, and refuses anything
else with `WeightsError`: a file can describe arrays, nothing more.
"""

from __future__ import annotations

import io
import pickletools
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

LZ4_MAGIC = b"\x04\x22\x4d\x18"
"""The first bytes of an lz4 frame, as joblib writes its .lz4 files."""
MAX_ARRAY_BYTES = 1 << 28


class WeightsError(ValueError):
    """A weights file that is not a plain list of numeric numpy arrays."""


class _Global:
    """One of the names the layout allows, standing for itself on the stack."""

    def __init__(self, name: str) -> None:
        self.name = name


WRAPPER, NDARRAY, DTYPE = (_Global(n) for n in (
    "joblib.numpy_pickle.NumpyArrayWrapper", "numpy.ndarray", "numpy.dtype"))
ALLOWED = {g.name: g for g in (WRAPPER, NDARRAY, DTYPE)}


class _Wrapper:
    """A NumpyArrayWrapper under construction: its state dict, then its array."""

    def __init__(self) -> None:
        self.state: dict[str, Any] | None = None


class _Mark:
    pass


_MARK = _Mark()
_PUSH_ARG = {"PROTO", "FRAME", "SHORT_BINUNICODE", "BINUNICODE", "BININT1", "BININT2", "BININT"}
_CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}


def read_arrays(path: str | Path) -> list[np.ndarray]:
    """The arrays of a joblib file (lz4-compressed or not), in order; WeightsError if it holds anything else."""
    data = Path(path).read_bytes()
    if data.startswith(LZ4_MAGIC):
        import lz4.frame  # noqa: PLC0415 - only files that need it

        try:
            data = lz4.frame.decompress(data)
        except RuntimeError as exc:
            raise WeightsError(f"{path}: not a valid lz4 frame: {exc}") from None
    try:
        return _read(io.BytesIO(data))
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None
    except (ValueError, EOFError, IndexError, KeyError, TypeError, AttributeError) as exc:
        raise WeightsError(f"{path}: not a joblib list of arrays ({type(exc).__name__}: {exc})") from None


def _read(stream: BinaryIO) -> list[np.ndarray]:
    stack: list[Any] = []
    memo: list[Any] = []
    while True:
        for op, arg, _ in pickletools.genops(stream):
            name = op.name
            if name in _PUSH_ARG:
                if name not in ("PROTO", "FRAME"):
                    stack.append(arg)
            elif name in _CONSTANTS:
                stack.append(_CONSTANTS[name])
            elif name == "MARK":
                stack.append(_MARK)
            elif name == "MEMOIZE":
                memo.append(stack[-1])
            elif name in ("BINGET", "LONG_BINGET"):
                stack.append(memo[arg])
            elif name == "EMPTY_LIST":
                stack.append([])
            elif name == "EMPTY_DICT":
                stack.append({})
            elif name == "EMPTY_TUPLE":
                stack.append(())
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                count = int(name[-1])
                items = tuple(stack[-count:])
                del stack[-count:]
                stack.append(items)
            elif name == "TUPLE":
                stack.append(tuple(_pop_mark(stack)))
            elif name == "STACK_GLOBAL":
                module, qualname = stack.pop(-2), stack.pop()
                found = ALLOWED.get(f"{module}.{qualname}")
                if found is None:
                    raise WeightsError(f"refused: the file names {module}.{qualname}, not a numpy array")
                stack.append(found)
            elif name == "NEWOBJ":
                args, cls = stack.pop(), stack.pop()
                if cls is not WRAPPER or args != ():
                    raise WeightsError("refused: an object other than joblib's array wrapper")
                stack.append(_Wrapper())
            elif name == "REDUCE":
                args, func = stack.pop(), stack.pop()
                if func is not DTYPE:
                    raise WeightsError("refused: a call other than numpy.dtype")
                stack.append(_dtype(args))
            elif name == "SETITEMS":
                items = _pop_mark(stack)
                stack[-1].update(zip(items[::2], items[1::2]))
            elif name == "SETITEM":
                value, key = stack.pop(), stack.pop()
                stack[-1][key] = value
            elif name == "APPEND":
                value = stack.pop()
                stack[-1].append(value)
            elif name == "APPENDS":
                items = _pop_mark(stack)
                stack[-1].extend(items)
            elif name == "BUILD":
                state, target = stack.pop(), stack[-1]
                if isinstance(target, np.dtype):
                    continue  # a dtype's state: byte order and flags, already known from its name
                if not isinstance(target, _Wrapper) or not isinstance(state, dict):
                    raise WeightsError("refused: state for an object other than an array")
                stack[-1] = _array(state, stream)
                break  # the array's bytes followed the opcode: parse again after them
            elif name == "STOP":
                return _result(stack)
            else:
                raise WeightsError(f"refused: pickle opcode {name} has no place in a list of arrays")
        else:
            raise WeightsError("the stream ended before its STOP opcode")


def _pop_mark(stack: list[Any]) -> list[Any]:
    at = max(i for i, item in enumerate(stack) if item is _MARK)
    items = stack[at + 1:]
    del stack[at:]
    return items


def _dtype(args: Any) -> np.dtype:
    """numpy.dtype(name, False, True) for a plain numeric type only."""
    if not (isinstance(args, tuple) and len(args) == 3 and isinstance(args[0], str)):
        raise WeightsError("refused: numpy.dtype called with unexpected arguments")
    dtype = np.dtype(args[0])
    if dtype.kind not in "fiub" or dtype.hasobject:
        raise WeightsError(f"refused: arrays of {dtype} are not plain numbers")
    return dtype


def _array(state: dict[str, Any], stream: BinaryIO) -> np.ndarray:
    """The array a wrapper's state describes, its bytes read from the stream (after joblib's alignment padding)."""
    dtype, shape, order = state.get("dtype"), state.get("shape"), state.get("order")
    if state.get("subclass") is not NDARRAY or not isinstance(dtype, np.dtype):
        raise WeightsError("refused: an array wrapper for something other than a numpy array")
    if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)) or order not in ("C", "F"):
        raise WeightsError("refused: an array with a malformed shape or order")
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if size > MAX_ARRAY_BYTES:
        raise WeightsError(f"refused: an array of {size} bytes")
    if state.get("numpy_array_alignment_bytes"):
        padding = stream.read(1)
        if len(padding) != 1:
            raise WeightsError("the stream ended inside an array")
        stream.read(padding[0])
    raw = stream.read(size)
    if len(raw) != size:
        raise WeightsError("the stream ended inside an array")
    return np.frombuffer(raw, dtype=dtype).reshape(shape, order=order).copy()


def _result(stack: list[Any]) -> list[np.ndarray]:
    if len(stack) != 1 or not isinstance(stack[0], list) or not all(isinstance(a, np.ndarray) for a in stack[0]):
        raise WeightsError("refused: the file holds something other than a list of arrays")
    return stack[0]
