"""The gallery folder: `known_faces/` on disk -> its photos, and `Gallery`, names and encodings in memory.

Two layouts are accepted side by side: `NAME.jpg` (one photo, the name is the
file name) and `NAME/*.jpg` (several photos of one person). The folder sync
(`sync.py`) reads it into the database; `live.folder_gallery` gives offline
tools its encodings as a `Gallery`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facewire.faces import images


@dataclass(frozen=True)
class Photo:
    """A gallery photo and the person it shows."""

    path: Path
    name: str


@dataclass(frozen=True)
class Gallery:
    """Known encodings, one row per usable photo; `names[i]` is the person of row i."""

    names: tuple[str, ...]
    encodings: np.ndarray

    @property
    def people(self) -> list[str]:
        return sorted(set(self.names))


def scan(known_dir: Path) -> list[Photo]:
    """All gallery photos, sorted: `NAME.ext` files and `NAME/*.ext` folders."""
    photos = []
    for entry in sorted(Path(known_dir).iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            photos += [Photo(p, entry.name) for p in sorted(entry.iterdir()) if images.is_image_path(p)]
        elif images.is_image_path(entry):
            photos.append(Photo(entry, entry.stem))
    return photos
