#!/usr/bin/env python3
"""The figures behind facewire/faces/enrolment.py's limits: what the real gallery photos measure, and how far
copies made worse on purpose move from them.

    .venv/bin/python bench/bench_enrolment.py

Real photos: every photo of ../shared/data/faces/known, known_faces/ and the video portraits (the largest
face of each), their width, sharpness, yaw and roll, and how near each is to its person's other photos and
to anyone else's. Worse copies of each: shrunk to a face of 20-80 px, Gaussian-blurred (sigma 0.5-8% of the
face's width), rotated 10-60 degrees; each with its quality and how far its encoding moved from the
original's ("moved"). Video: every 5th frame of the clip, each face's yaw and its distance to the nearer
portrait. Summaries at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from facewire.faces import images  # noqa: E402
from facewire.faces.boxes import box_area  # noqa: E402
from facewire.faces.matching import distance_matrix  # noqa: E402
from facewire.faces.quality import Quality, face_quality  # noqa: E402
from facewire.faces.recognize import Face, find_faces  # noqa: E402
from facewire.faces.settings import DetectorSettings  # noqa: E402

SHARED_FACES = ROOT.parent / "shared" / "data" / "faces"
SETTINGS = DetectorSettings(detect_threads="1")
WIDTHS = (20, 28, 36, 44, 52, 60, 80)
BLURS = (0.005, 0.0075, 0.01, 0.0125, 0.015, 0.0175, 0.02, 0.025, 0.03, 0.04, 0.06, 0.08)
ROTATIONS = tuple(range(10, 65, 5))


def largest(image: np.ndarray) -> Face | None:
    faces = find_faces(image, SETTINGS)
    return max(faces, key=lambda face: box_area(face.box)) if faces else None


def gallery() -> list[tuple[str, Path]]:
    """(person, path) of every real gallery photo."""
    return ([(path.parent.name, path) for path in sorted((SHARED_FACES / "known").glob("*/*.jp*g"))]
            + [(path.stem, path) for path in sorted((ROOT / "known_faces").glob("*.jpg"))]
            + [(path.stem.replace("-", "_"), path) for path in sorted((SHARED_FACES / "video").glob("*.png"))])


def rotated(image: np.ndarray, degrees: float) -> np.ndarray:
    height, width = image.shape[:2]
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    return cv2.warpAffine(image, turn, (width, height), borderMode=cv2.BORDER_REPLICATE)


def copies(image: np.ndarray, width: int) -> list[tuple[str, float, np.ndarray]]:
    """(kind, amount, copy) of one photo whose face is `width` px wide."""
    shrunk = [("width", w, cv2.resize(image, None, fx=w / width, fy=w / width, interpolation=cv2.INTER_AREA))
              for w in WIDTHS]
    blurred = [("blur", b, cv2.GaussianBlur(image, (0, 0), b * width)) for b in BLURS]
    return shrunk + blurred + [("rotation", r, rotated(image, r)) for r in ROTATIONS]


def line(quality: Quality) -> str:
    return (f"w {quality.width:4d}  sharpness {quality.sharpness:6.0f}  yaw {quality.yaw:6.1f}  "
            f"roll {quality.roll:6.1f}")


def main() -> None:
    photos = gallery()
    found = [(person, path, images.read_image(path)) for person, path in photos]
    faces = [largest(image) for _, _, image in found]
    encodings = np.array([face.encoding for face in faces])
    distances = distance_matrix(encodings, encodings)
    print("real photos")
    for i, ((person, path, image), face) in enumerate(zip(found, faces)):
        own = [distances[i, j] for j, (other, _) in enumerate(photos) if other == person and j != i]
        other = min(distances[i, j] for j, (name, _) in enumerate(photos) if name != person)
        print(f"  {person:20s} {path.name:24s} {line(face_quality(image, face.detection))}  "
              f"own {min(own) if own else float('nan'):.2f}  other {other:.2f}")
    moved: dict[str, list[tuple[float, Quality, float]]] = {"width": [], "blur": [], "rotation": []}
    print("worse copies")
    for (person, path, image), face in zip(found, faces):
        for kind, amount, copy in copies(image, face.box[1] - face.box[3]):
            worse = largest(copy)
            if worse is None:
                print(f"  {path.name:24s} {kind:8s} {amount:6g}  no face")
                continue
            quality = face_quality(copy, worse.detection)
            shift = float(np.linalg.norm(worse.encoding - face.encoding))
            moved[kind].append((amount, quality, shift))
            print(f"  {path.name:24s} {kind:8s} {amount:6g}  {line(quality)}  moved {shift:.2f}")
    print("video: every 5th frame, each face's yaw and distance to the nearer portrait")
    portraits = encodings[[i for i, (_, path) in enumerate(photos) if path.suffix == ".png"]]
    capture = cv2.VideoCapture(str(SHARED_FACES / "video" / "short_hamilton_clip.mp4"))
    number = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if number % 5 == 0:
            for face in find_faces(frame, SETTINGS):
                nearest = distance_matrix(face.encoding[None, :], portraits).min()
                print(f"  frame {number:3d}  {line(face_quality(frame, face.detection))}  portrait {nearest:.2f}")
        number += 1
    summarise(moved)


def summarise(moved: dict[str, list[tuple[float, Quality, float]]]) -> None:
    print("summary")
    for width in WIDTHS:
        shifts = [shift for amount, _, shift in moved["width"] if amount == width]
        print(f"  shrunk to {width} px: moved at most {max(shifts):.2f}")
    blurred = moved["blur"]
    for name, keep in (("under 100", lambda q: q.sharpness < 100), ("100 or more", lambda q: q.sharpness >= 100)):
        shifts = [shift for _, quality, shift in blurred if keep(quality)]
        print(f"  blurred, sharpness {name}: {len(shifts)} copies moved {min(shifts):.2f}-{max(shifts):.2f}")
    level = [shift for _, quality, shift in moved["rotation"] if abs(quality.roll) <= 40]
    steep = [shift for _, quality, shift in moved["rotation"] if abs(quality.roll) > 45]
    print(f"  rotated, roll 40 or less: {len(level)} copies, {sum(s <= 0.13 for s in level)} moved 0.13 or less, "
          f"the others {', '.join(f'{s:.2f}' for s in sorted(level) if s > 0.13)}")
    print(f"  rotated, roll over 45: {len(steep)} copies, {sum(s > 0.2 for s in steep)} moved over 0.2 "
          f"(at most {max(steep):.2f})")


if __name__ == "__main__":
    main()
