"""The live gallery: known_faces/ on disk, reloaded when it changes, and edited by enrol/remove.

Every worker owns a GalleryStore. `current()` compares fingerprints with the last ones
and reloads from the warm cache when anything changed. The cache file and the gallery
folder (2 stat calls) are checked on every request: that catches an enrolment by another
worker, and people added or removed. The person folders (photos added by hand) are
checked at most once a second, so a big gallery adds no per-request cost.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from facewire.faces import images
from facewire.faces.images import ImageError
from facewire.faces.recognize import DetectorSettings, find_faces
from facewire.files import write_atomically
from facewire.store.gallery import Gallery, LoadStats, cache_path_for, load_gallery, scan

log = logging.getLogger(__name__)

MAX_NAME_LENGTH = 100
THUMBNAIL = 160
"""`GalleryStore.photo` fits a person's photo within this many pixels a side."""
FOLDER_CHECK_SECONDS = 1.0


class EnrolError(ValueError):
    """A name or photo the gallery refuses; each subclass carries its `code` for programs, the message is for people."""

    code = "bad_request"


class BadName(EnrolError):
    code = "bad_name"


class BadPhoto(EnrolError):
    code = "bad_photo"


class NotFound(EnrolError):
    code = "not_found"


def check_name(name: object) -> str:
    """A person's name: any Unicode text, but no path tricks and no control characters."""
    if not isinstance(name, str) or not name.strip():
        raise BadName("name must be a non-empty string")
    name = unicodedata.normalize("NFC", name.strip())
    if len(name) > MAX_NAME_LENGTH:
        raise BadName(f"name is longer than {MAX_NAME_LENGTH} characters")
    if name in (".", "..") or name.startswith(".") or any(c in name for c in "/\\\0"):
        raise BadName("name must not contain / or \\, nor start with a dot")
    if any(unicodedata.category(c).startswith("C") for c in name):
        raise BadName("name must not contain control characters")
    return name


@dataclass
class GalleryStore:
    """known_faces/ and its cache, kept in step with the disk."""

    known_dir: Path
    settings: DetectorSettings
    cache_path: Path | None = None
    gallery: Gallery = field(default_factory=Gallery.empty)
    stats: LoadStats = field(default_factory=LoadStats)
    quick: tuple = ()
    folders: tuple = ()
    folders_checked: float = 0.0

    def __post_init__(self) -> None:
        self.known_dir = Path(self.known_dir)
        self.reload()

    def _cache_stamp(self) -> int:
        cache = cache_path_for(self.known_dir, self.cache_path)
        return cache.stat().st_mtime_ns if cache.exists() else 0

    def _quick_fingerprint(self) -> tuple:
        return (self._cache_stamp(), self.known_dir.stat().st_mtime_ns)

    def _folder_fingerprint(self) -> tuple:
        folders = [p for p in self.known_dir.iterdir() if p.is_dir() and not p.name.startswith(".")]
        return tuple(sorted((p.name, p.stat().st_mtime_ns) for p in folders))

    def reload(self) -> Gallery:
        """Load the gallery. The folders are stamped *before* loading, so a change made during
        the load is seen at the next check; the cache after, so our own cache write is not."""
        folder_stamp, folders = self.known_dir.stat().st_mtime_ns, self._folder_fingerprint()
        self.gallery, self.stats = load_gallery(self.known_dir, self.settings, self.cache_path)
        self.quick, self.folders = (self._cache_stamp(), folder_stamp), folders
        self.folders_checked = time.monotonic()
        return self.gallery

    def current(self) -> Gallery:
        """The gallery as the disk has it now (reloaded only if something changed)."""
        changed = self._quick_fingerprint() != self.quick
        if not changed and time.monotonic() - self.folders_checked >= FOLDER_CHECK_SECONDS:
            self.folders_checked = time.monotonic()
            changed = self._folder_fingerprint() != self.folders
        if changed:
            log.info("gallery changed on disk; reloading")
            self.reload()
        return self.gallery

    def people(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for name in self.current().names:
            counts[name] = counts.get(name, 0) + 1
        return dict(sorted(counts.items()))

    def enrol(self, name: str, image: np.ndarray, who: str = "local") -> int:
        """Store a photo with exactly one face under known_faces/NAME/; returns that person's photo count.
        `who`: the name of the key that asked, for the log."""
        name = check_name(name)
        faces = find_faces(image, self.settings)
        if len(faces) != 1:
            raise BadPhoto(f"the photo must show exactly one face; it shows {len(faces)}")
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise ImageError("could not encode the photo")
        folder = self.known_dir / name
        if any(p.name == name and p.path.parent == self.known_dir for p in scan(self.known_dir)):
            raise BadName(f"{name} is a single-file entry (NAME.jpg): move it into a {name}/ folder first")
        folder.mkdir(exist_ok=True)
        photo = data.tobytes()
        write_atomically(folder / f"{_digest(data)}.jpg", lambda f: f.write(photo))
        self.reload()
        log.info("enrolled a photo of %s (by %s)", name, who)
        return self.people().get(name, 0)

    def remove(self, name: str, who: str = "local") -> int:
        """Remove a person (folder and single-file entries); returns how many photos went.
        `who`: the name of the key that asked, for the log."""
        name = check_name(name)
        photos = [p for p in scan(self.known_dir) if p.name == name]
        if not photos:
            raise NotFound(f"no person called {name}")
        folder = self.known_dir / name
        if folder.is_dir():
            trash = Path(tempfile.mkdtemp(dir=self.known_dir, prefix=".removing-"))
            os.replace(folder, trash / "person")  # disappears at once, then is deleted
            shutil.rmtree(trash)
        for photo in photos:
            photo.path.unlink(missing_ok=True)
        self.reload()
        log.info("removed %s (%d photos, by %s)", name, len(photos), who)
        return len(photos)


    def photo(self, name: str) -> np.ndarray:
        """A thumbnail (at most THUMBNAIL px a side, BGR) of the person's first photo, by path."""
        name = check_name(name)
        photos = sorted(p.path for p in scan(self.known_dir) if p.name == name)
        if not photos:
            raise NotFound(f"no person called {name}")
        image = images.to_bgr(images.read_image(photos[0]))
        scale = THUMBNAIL / max(image.shape[:2])
        return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image


def _digest(data: np.ndarray) -> str:
    return hashlib.sha256(data.tobytes()).hexdigest()[:16]
