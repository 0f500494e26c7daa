"""Hand-labelled face boxes on real group photos, and hard cases made from them, for bench_detector.py.

Every picture is a `Labelled`: a name, a BGR image, the face boxes a detector must find, and boxes it
need not find (a face cut more than half away by the frame, or a box labelled ignore='1'): a detection
there is neither found nor false. Boxes are (top, right, bottom, left) pixels, square and tight as
dlib's detectors draw them (right = left + width - 1). The sets:

- detect: the nine PASCAL VOC group photos of ../shared/data/detect (read there, never copied), with
  the 43 faces of dlib's imglab files testing.xml and training.xml.
- rotated15, rotated30: each photo turned by +angle and by -angle about its centre on a canvas grown
  so that nothing is cut (black corners); each label becomes the box of the same size centred where
  its centre went (a face keeps its size when it turns). The grown canvas raises facewire's smallest
  face searched (short side / 16) to 28-39 px, near these faces' 37 px: bench_detector.py
  --min-face-fraction 0 shows the effect of the rotation alone.
- cut: for each face, the photo cropped so that one edge of the crop (left, right, top, bottom in
  turn) leaves a third of that face outside. Every face keeping half of its box or more stays a label,
  clipped to the crop; a face cut more is ignored.
- jpeg15: each photo re-encoded as JPEG at quality 15.
- blur: each photo blurred (Gaussian, sigma 2 px: faces of 40 px go visibly soft).
- dark: each photo under-exposed as bench/face_sets.py's dark set is.
- small: each photo shrunk so that its median face is 20 px wide (labels scaled).

    .venv/bin/python bench/detect_sets.py --draw /tmp/detect_sets_check   # each set's pictures, labels drawn
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import xml.etree.ElementTree as ElementTree
from functools import partial
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import face_sets  # noqa: E402
from facewire.faces.boxes import box_area  # noqa: E402
from facewire.faces.settings import Box  # noqa: E402

DETECT = ROOT.parent / "shared" / "data" / "detect"
LABEL_FILES = ("training.xml", "testing.xml")
CUT_SIDES = ("left", "right", "top", "bottom")
CUT_FRACTION = 1 / 3
"""The part of a face's width (or height) the `cut` set's crop leaves outside."""
KEPT_AREA = 0.5
"""A face cut by a crop stays a label when this much of its box is inside; less, and it is ignored."""
JPEG_QUALITY = 15
BLUR_SIGMA = 2.0
SMALL_FACE = 20
"""The `small` set's median face width, px."""


class Labelled(NamedTuple):
    """A picture, the faces a detector must find in it, and those it need not find."""

    name: str
    image: np.ndarray
    boxes: tuple[Box, ...]
    ignored: tuple[Box, ...] = ()


def read_labels(folder: Path = DETECT) -> dict[str, tuple[list[Box], list[Box]]]:
    """{photo file: (boxes, ignored boxes)} from dlib's imglab XML files in `folder`."""
    labels: dict[str, tuple[list[Box], list[Box]]] = {}
    for xml in LABEL_FILES:
        for image in ElementTree.parse(folder / xml).getroot().iter("image"):
            boxes, ignored = labels.setdefault(image.get("file"), ([], []))
            for box in image.iter("box"):
                top, left, width, height = (int(box.get(key)) for key in ("top", "left", "width", "height"))
                labelled = (top, left + width - 1, top + height - 1, left)
                (ignored if box.get("ignore") == "1" else boxes).append(labelled)
    return labels


def detect_set(folder: Path = DETECT) -> list[Labelled]:
    """The labelled photos as they are."""
    pictures = []
    for file, (boxes, ignored) in sorted(read_labels(folder).items()):
        image = cv2.imread(str(folder / file))
        if image is None:
            raise FileNotFoundError(folder / file)
        pictures.append(Labelled(file, image, tuple(boxes), tuple(ignored)))
    return pictures


def moved(picture: Labelled, name: str, image: np.ndarray, move: Callable[[Box], Box]) -> Labelled:
    """`picture` as `image`, each of its boxes moved by `move` (a geometric change of the photo)."""
    return Labelled(name, image, tuple(map(move, picture.boxes)), tuple(map(move, picture.ignored)))


def restyled(picture: Labelled, name: str, image: np.ndarray) -> Labelled:
    """`picture` as `image`, its boxes where they were (a change of the pixels only)."""
    return Labelled(name, image, picture.boxes, picture.ignored)


def rotated(picture: Labelled, degrees: float) -> Labelled:
    """`picture` turned by `degrees` (counter-clockwise as seen) on a canvas grown to hold all of it."""
    height, width = picture.image.shape[:2]
    turn = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), degrees, 1.0)
    cos, sin = abs(turn[0, 0]), abs(turn[0, 1])
    size = (math.ceil(width * cos + height * sin), math.ceil(height * cos + width * sin))
    turn[:, 2] += ((size[0] - width) / 2, (size[1] - height) / 2)
    image = cv2.warpAffine(picture.image, turn, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return moved(picture, f"{picture.name} {degrees:+g}deg", image, lambda box: turned_box(box, turn))


def turned_box(box: Box, turn: np.ndarray) -> Box:
    """The box of `box`'s size centred where the 2x3 affine `turn` takes its centre."""
    top, right, bottom, left = box
    x, y = turn @ ((left + right) / 2, (top + bottom) / 2, 1.0)
    new_top, new_left = round(y - (bottom - top) / 2), round(x - (right - left) / 2)
    return new_top, new_left + right - left, new_top + bottom - top, new_left


def rotated_set(pictures: Sequence[Labelled], degrees: float) -> list[Labelled]:
    return [rotated(picture, sign * degrees) for picture in pictures for sign in (1, -1)]


def crop_window(box: Box, side: str, height: int, width: int) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1), the photo's part whose `side` edge leaves CUT_FRACTION of `box` outside."""
    top, right, bottom, left = box
    y0, y1, x0, x1 = 0, height, 0, width
    if side == "left":
        x0 = left + round((right - left + 1) * CUT_FRACTION)
    elif side == "right":
        x1 = right + 1 - round((right - left + 1) * CUT_FRACTION)
    elif side == "top":
        y0 = top + round((bottom - top + 1) * CUT_FRACTION)
    else:
        y1 = bottom + 1 - round((bottom - top + 1) * CUT_FRACTION)
    return y0, y1, x0, x1


def inside(box: Box, y0: int, y1: int, x0: int, x1: int) -> Box | None:
    """`box` clipped to the window, in the window's pixels (None if nothing of it is inside)."""
    top, right, bottom, left = max(box[0], y0), min(box[1], x1 - 1), min(box[2], y1 - 1), max(box[3], x0)
    return (top - y0, right - x0, bottom - y0, left - x0) if top <= bottom and left <= right else None


def cropped(picture: Labelled, index: int, side: str) -> Labelled:
    """`picture` cropped through its face `index` on `side`; faces kept less than KEPT_AREA are ignored."""
    height, width = picture.image.shape[:2]
    window = crop_window(picture.boxes[index], side, height, width)
    boxes: list[Box] = []
    ignored = [kept for kept in (inside(box, *window) for box in picture.ignored) if kept]
    for box in picture.boxes:
        kept = inside(box, *window)
        if kept is not None:
            (boxes if box_area(kept) >= KEPT_AREA * box_area(box) else ignored).append(kept)
    y0, y1, x0, x1 = window
    return Labelled(f"{picture.name} face{index} cut {side}", picture.image[y0:y1, x0:x1].copy(),
                    tuple(boxes), tuple(ignored))


def cut_set(pictures: Sequence[Labelled]) -> list[Labelled]:
    """One crop per face, the cut side taking turns left, right, top, bottom over all faces."""
    faces = [(picture, index) for picture in pictures for index in range(len(picture.boxes))]
    return [cropped(picture, index, CUT_SIDES[turn % len(CUT_SIDES)])
            for turn, (picture, index) in enumerate(faces)]


def jpeg_set(pictures: Sequence[Labelled], quality: int = JPEG_QUALITY) -> list[Labelled]:
    def encoded(image: np.ndarray) -> np.ndarray:
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        return cv2.imdecode(data, cv2.IMREAD_COLOR)
    return [restyled(p, f"{p.name} q{quality}", encoded(p.image)) for p in pictures]


def blur_set(pictures: Sequence[Labelled], sigma: float = BLUR_SIGMA) -> list[Labelled]:
    return [restyled(p, f"{p.name} blur{sigma:g}", cv2.GaussianBlur(p.image, (0, 0), sigma))
            for p in pictures]


def dark_set(pictures: Sequence[Labelled]) -> list[Labelled]:
    """face_sets.dark_set's under-exposure, applied to these photos."""
    dark = face_sets.dark_set([face_sets.Case(p.name, p.image, ()) for p in pictures])
    return [restyled(p, case.name, case.image) for p, case in zip(pictures, dark, strict=True)]


def scaled_box(box: Box, factor: float) -> Box:
    """A box in a picture resized by `factor` (its pixel edges scaled, right and bottom inclusive)."""
    top, right, bottom, left = box
    return (round(top * factor), round((right + 1) * factor) - 1, round((bottom + 1) * factor) - 1,
            round(left * factor))


def small_set(pictures: Sequence[Labelled], face_px: int = SMALL_FACE) -> list[Labelled]:
    """Each photo shrunk so that its median face is `face_px` wide."""
    shrunk = []
    for picture in pictures:
        factor = face_px / statistics.median(right - left + 1 for _, right, _, left in picture.boxes)
        image = cv2.resize(picture.image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        move = partial(scaled_box, factor=factor)
        shrunk.append(moved(picture, f"{picture.name} @{face_px}px", image, move))
    return shrunk


SETS: dict[str, Callable[[list[Labelled]], list[Labelled]]] = {
    "detect": list,
    "rotated15": lambda photos: rotated_set(photos, 15),
    "rotated30": lambda photos: rotated_set(photos, 30),
    "cut": cut_set,
    "jpeg15": jpeg_set,
    "blur": blur_set,
    "dark": dark_set,
    "small": small_set,
}
"""Each set's name and how it is made from the labelled photos, in the benchmark's order."""


def all_sets(names: Sequence[str] = tuple(SETS), folder: Path = DETECT) -> dict[str, list[Labelled]]:
    """The sets named (all by default), by name."""
    photos = detect_set(folder)
    return {name: SETS[name](photos) for name in names}


def drawn(picture: Labelled) -> np.ndarray:
    """The picture with its labels drawn: green to find, red ignored."""
    image = picture.image.copy()
    for boxes, colour in ((picture.boxes, (0, 220, 0)), (picture.ignored, (0, 0, 255))):
        for top, right, bottom, left in boxes:
            cv2.rectangle(image, (left, top), (right, bottom), colour, 1)
    return image


def main() -> None:
    parser = argparse.ArgumentParser(description="Write each set's pictures with their labels drawn.")
    parser.add_argument("--draw", type=Path, required=True, help="folder for the PNGs")
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    args = parser.parse_args()
    args.draw.mkdir(parents=True, exist_ok=True)
    for name, pictures in all_sets(args.sets).items():
        for index, picture in enumerate(pictures):
            cv2.imwrite(str(args.draw / f"{name}-{index:02d}.png"), drawn(picture))
        print(f"{name}: {len(pictures)} pictures, {sum(len(p.boxes) for p in pictures)} faces, "
              f"{sum(len(p.ignored) for p in pictures)} ignored")


if __name__ == "__main__":
    main()
