"""argparse types that refuse values which cannot work: a clear usage error (exit 2), never a traceback."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Callable, TypeVar

Number = TypeVar("Number", int, float)


def bounded(kind: Callable[[str], Number], low: Number | None = None, high: Number | None = None,
            above: bool = False) -> Callable[[str], Number]:
    """A finite `kind` in [low, high]; with `above`, strictly greater than low."""
    if low is not None and high is not None:
        wanted = f"in [{low:g}, {high:g}]"
    else:
        wanted = f"above {low:g}" if above else f"{low:g} or more"

    def parse(text: str) -> Number:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not math.isfinite(value) or (low is not None and (value <= low if above else value < low)) \
                or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text} is not {wanted}")
        return value

    return parse


def person_name(text: str) -> str:
    """A gallery name, by the server's own rules (store.check_name)."""
    # imported here: the store imports dlib, which a client (or the HTTP gateway) need not
    from facewire.store.live import EnrolError, check_name

    try:
        return check_name(text)
    except EnrolError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def folder(text: str) -> Path:
    """A folder that exists."""
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"no folder {text}")
    return Path(text)


def folder_to_write(text: str) -> Path:
    """A folder that exists or can be made: not a file."""
    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder")
    return Path(text)


def file_to_write(text: str) -> Path:
    """A file to (over)write: not a folder, and in a folder that exists."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder")
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"no folder {path.parent} to write {path.name} in")
    return path
