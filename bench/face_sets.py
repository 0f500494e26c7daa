"""Hard cases made from real photos, for the accuracy benchmark and its test.

Every case is a BGR picture and the names expected in it ("unknown" for a face that must
get no known name). The sets:

- shared: ../shared/data/faces/test as it is, with its labels.json.
- reduced: the same photos shrunk so that their faces are 15 to 40 px wide.
- mosaics: group pictures of 200-320 px tiled from the faces of those photos and of the
  repo's public-domain portraits (Grace Hopper, Eileen Collins): 4 to 10 people a
  picture, faces of 15 to 30 px, as in the original demo's own group examples.
- dark: the mosaics under-exposed (gamma 2.2, then halved).
- crops: each face cut tight (a tenth of its width around it), 20 to 50 px wide.

Who each face is comes from labels.json: a photo's faces are found at full size and
matched to the gallery, and the names must be exactly the labelled ones.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import cv2
import numpy as np

from facewire.faces import hog, images
from facewire.faces.matching import UNKNOWN, match_faces
from facewire.faces.recognize import find_faces
from facewire.faces.settings import Box, DetectorSettings, MatchSettings

ROOT = Path(__file__).resolve().parent.parent
SHARED_FACES = ROOT.parent / "shared" / "data" / "faces"
REPO_GALLERY_PHOTO = ROOT / "known_faces" / "grace_hopper.jpg"
REPO_PROBES = ROOT / "test_images"
EXPECTED_UNKNOWN = "unknown"
SMALL_FACE_SETS = ("reduced", "mosaics", "dark", "crops")
SET_DETECTION = DetectorSettings(detector="hog", detect_threads="1")
LABELLING = MatchSettings(0.6, decision="nearest")
"""Who each face of a shared photo is: its nearest person within 0.6, whatever the server's default rule."""


def portraits(shared: list[Case], gallery: Path) -> list[Portrait]:
    """Every face of the shared photos and of the repo's group picture, with who it is, found by one plain
    dlib call per picture (never the pyramid's two halves, whose boxes may differ by a pixel): the sets are
    fixed inputs, the same pictures whatever facewire's detection does now."""
    with mock.patch.object(hog, "SPLIT_PIXELS", math.inf):
        return _portraits(shared, gallery)


@dataclass(frozen=True)
class Case:
    """A picture and the names expected in it."""

    name: str
    image: np.ndarray
    expected: tuple[str, ...]


@dataclass(frozen=True)
class Portrait:
    """One face of a real photo: the photo, the face's box there, and who it is."""

    source: str
    photo: np.ndarray
    box: Box
    who: str

    @property
    def width(self) -> int:
        return self.box[1] - self.box[3]


def make_gallery(folder: Path, faces: Path = SHARED_FACES) -> Path:
    """The benchmark's gallery: the shared one plus the repo's Grace Hopper (links, not copies)."""
    folder.mkdir(parents=True, exist_ok=True)
    for person in sorted((faces / "known").iterdir()):
        if person.is_dir():
            (folder / person.name).symlink_to(person.resolve(), target_is_directory=True)
    (folder / REPO_GALLERY_PHOTO.name).symlink_to(REPO_GALLERY_PHOTO)
    return folder


def shared_set(faces: Path = SHARED_FACES) -> list[Case]:
    labels = json.loads((faces / "labels.json").read_text())
    return [Case(Path(key).name, images.read_image(faces / key), tuple(names))
            for key, names in sorted(labels.items()) if not key.startswith("_")]


def _portraits(shared: list[Case], gallery: Path) -> list[Portrait]:
    import tempfile

    from facewire.store.live import folder_gallery  # noqa: PLC0415 - only the set builder needs it

    with tempfile.TemporaryDirectory() as tmp:
        known, _ = folder_gallery(gallery, SET_DETECTION, f"sqlite:///{tmp}/gallery.db")
    found = []
    sources = [*((case.name, case.image, case.expected) for case in shared),
               ("grace_hopper.jpg", images.read_image(REPO_PROBES / "grace_hopper.jpg"), ("grace_hopper",)),
               ("group_small_faces.jpg", cv2.resize(images.read_image(REPO_PROBES / "group_small_faces.jpg"),
                                                    None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC),
                ("grace_hopper", EXPECTED_UNKNOWN))]
    for name, photo, expected in sources:
        faces = find_faces(photo, SET_DETECTION)
        matches = match_faces(np.array([f.encoding for f in faces]), known.encodings, known.names, LABELLING)
        who = [EXPECTED_UNKNOWN if m.name == UNKNOWN else m.name for m in matches]
        if Counter(who) != Counter(expected):
            raise ValueError(f"{name}: faces at full size are {who}, labels say {list(expected)}")
        found += [Portrait(name, photo, face.box, person) for face, person in zip(faces, who)]
    return found


def _shrunk(image: np.ndarray, factor: float) -> np.ndarray:
    return cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)


def reduced_set(shared: list[Case], people: list[Portrait], sizes=(15, 18, 20, 25, 30, 40)) -> list[Case]:
    """Each shared photo shrunk so that its faces are, on average, each of `sizes` px wide."""
    cases = []
    for case in shared:
        widths = [p.width for p in people if p.source == case.name]
        for size in sizes:
            cases.append(Case(f"{case.name}@{size}px", _shrunk(case.image, size / np.mean(widths)), case.expected))
    return cases


def _head(portrait: Portrait, face_px: int) -> np.ndarray:
    """Head and shoulders around a face, scaled so that the face is `face_px` wide."""
    top, right, bottom, left = portrait.box
    w = right - left
    h, width = portrait.photo.shape[:2]
    crop = portrait.photo[max(0, top - w // 2):min(h, bottom + w), max(0, left - w // 2):min(width, right + w // 2)]
    return _shrunk(crop, face_px / w)


def mosaic_set(people: list[Portrait], count: int = 24, seed: int = 9) -> list[Case]:
    """Group pictures: a grid of heads on a plain ground, 4-10 people, faces of 15-30 px."""
    chooser = random.Random(seed)
    cases = []
    for index in range(count):
        rows, cols = chooser.choice([(2, 2), (2, 3), (2, 4), (3, 3), (2, 5)])
        face_px = chooser.randint(15, 30)
        chosen = [chooser.choice(people) for _ in range(rows * cols)]
        heads = [_head(p, face_px) for p in chosen]
        cell_h = max(h.shape[0] for h in heads) + chooser.randint(2, 12)
        cell_w = max(h.shape[1] for h in heads) + chooser.randint(2, 12)
        ground = tuple(chooser.randint(90, 200) for _ in range(3))
        canvas = np.full((rows * cell_h, cols * cell_w, 3), ground, np.uint8)
        for slot, head in enumerate(heads):
            y = (slot // cols) * cell_h + chooser.randint(0, cell_h - head.shape[0])
            x = (slot % cols) * cell_w + chooser.randint(0, cell_w - head.shape[1])
            canvas[y:y + head.shape[0], x:x + head.shape[1]] = head
        cases.append(Case(f"mosaic{index:02d}-{rows}x{cols}@{face_px}px", canvas, tuple(p.who for p in chosen)))
    return cases


def dark_set(cases: list[Case]) -> list[Case]:
    """Under-exposed copies: gamma 2.2 (darker mid-tones), then half the light."""
    table = (np.linspace(0, 1, 256) ** 2.2 * 255 * 0.5).astype(np.uint8)
    return [Case(f"{case.name} dark", cv2.LUT(case.image, table), case.expected) for case in cases]


def crop_set(people: list[Portrait], sizes=(20, 30, 50)) -> list[Case]:
    """Each face cut tight, with a tenth of its width around it, at each of `sizes` px."""
    cases = []
    for index, portrait in enumerate(people):
        top, right, bottom, left = portrait.box
        margin = (right - left) // 10
        crop = portrait.photo[max(0, top - margin):bottom + margin, max(0, left - margin):right + margin]
        for size in sizes:
            cases.append(Case(f"{portrait.source}#{index}@{size}px crop", _shrunk(crop, size / portrait.width),
                              (portrait.who,)))
    return cases


def all_sets(gallery: Path, faces: Path = SHARED_FACES) -> dict[str, list[Case]]:
    """Every set, by name, in the benchmark's order."""
    shared = shared_set(faces)
    people = portraits(shared, gallery)
    mosaics = mosaic_set(people)
    return {"shared": shared, "reduced": reduced_set(shared, people), "mosaics": mosaics,
            "dark": dark_set(mosaics), "crops": crop_set(people)}
