#!/usr/bin/env python3
"""Fit the mapping from MTCNN's box and landmarks to the box dlib's HOG detector draws, and measure it.

    .venv/bin/python bench/fit_box_mapping.py

dlib's 5-point shape predictor, which aligns the chips its face encoder reads, was trained on boxes drawn
the way dlib's own detectors draw them; an MTCNN box is taller and placed otherwise. On every face that
both detectors find in the shared photos (../shared/data/faces: gallery, probes, strangers, the clip's
portraits and every 10th frame of the clip; ../shared/data/detect; the repo's pictures), this fits by
least squares the dlib box's centre and side from MTCNN's landmarks, and prints the coefficients for
facewire/faces/mtcnn.py, then the encoding distance between the two routes (each face encoded from the
HOG box and from the mapped MTCNN box) for the mapping found and for MTCNN's box as it is.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from facewire.faces import boxes, detection, encoding, images, mtcnn  # noqa: E402
from facewire.faces.settings import DetectorSettings  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
HOG = DetectorSettings(detector="hog", detect_threads="1")
MTCNN = DetectorSettings(detector="mtcnn", detect_threads="1")


def pictures() -> list[tuple[str, np.ndarray]]:
    """Every picture of the shared data and the repo, as (name, BGR)."""
    paths = sorted((SHARED / "faces").glob("*/**/*.jp*g")) + sorted((SHARED / "faces").glob("*/*.png"))
    paths += sorted((SHARED / "detect").glob("*.jpg")) + sorted((ROOT / "test_images").glob("*.jpg"))
    found = [(str(path.relative_to(path.parents[1])), images.read_image(path)) for path in paths]
    clip = cv2.VideoCapture(str(SHARED / "faces" / "video" / "short_hamilton_clip.mp4"))
    index = 0
    while True:
        ok, frame = clip.read()
        if not ok:
            break
        if index % 10 == 0:
            found.append((f"clip frame {index}", frame))
        index += 1
    return found


def pairs(pictures_: list[tuple[str, np.ndarray]]) -> list[tuple[str, np.ndarray, tuple, mtcnn.Found, int]]:
    """(picture, BGR, HOG box, MTCNN's raw result, index in it) for each face both detectors find."""
    out = []
    for name, bgr in pictures_:
        rgb = images.to_rgb(bgr)
        found = mtcnn.raw_detect(rgb, MTCNN)
        for box in (d.box for d in detection.detect_faces(bgr, HOG)):
            top, right, bottom, left = box
            centre = np.array([(left + right) / 2, (top + bottom) / 2])
            inside = [i for i, b in enumerate(found.boxes) if b[0] <= centre[0] <= b[2] and b[1] <= centre[1] <= b[3]]
            if len(inside) == 1:
                out.append((name, bgr, box, found, inside[0]))
    return out


def fit(data) -> np.ndarray:
    """Least squares (each face weighted by its size): dlib's box side from MTCNN's box width, and its
    centre's offset from the landmarks' origin in sides (see mtcnn.dlib_box)."""
    widths, sides, offsets = [], [], []
    for _, _, (top, right, bottom, left), found, i in data:
        widths.append(found.boxes[i][2] - found.boxes[i][0])
        sides.append(((right - left) + (bottom - top)) / 2)
        centre = np.array([(left + right) / 2, (top + bottom) / 2])
        offsets.append((centre - mtcnn.landmark_origin(found.landmarks[i])) / sides[-1])
    ratio = float(np.mean(np.array(sides) / np.array(widths)))
    return np.array([*np.mean(offsets, 0), ratio])


def fit_tracked_square(data) -> np.ndarray:
    """The square R-Net is given for a face (MTCNN's box made square), from dlib's box around it: its
    centre's offset and its side, in dlib box sides, averaged over the faces (see mtcnn.tracked_square)."""
    rows = []
    for _, _, _, found, i in data:
        top, right, bottom, left = mtcnn.dlib_box(found.boxes[i], found.landmarks[i])
        side = right - left
        x1, y1, x2, y2 = mtcnn.square(found.boxes[i:i + 1])[0]
        rows.append(((x1 + x2 - left - right) / 2 / side, (y1 + y2 - top - bottom) / 2 / side, (x2 - x1) / side))
    return np.mean(rows, 0)


def hog_rescaled(bgr: np.ndarray, box: tuple, factor: float = 1.1) -> tuple | None:
    """The HOG box of the same face in the picture enlarged by `factor`, in the picture's pixels."""
    bigger = cv2.resize(bgr, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
    found = [d.box for d in detection.detect_faces(bigger, HOG)]
    scaled = [tuple(round(v / factor) for v in b) for b in found]
    best = max(scaled, key=lambda b: boxes.iou(b, box), default=None)
    return best if best is not None and boxes.iou(best, box) > 0.3 else None


def main() -> None:
    data = pairs(pictures())
    print(f"{len(data)} faces found by both detectors")
    coefficients = fit(data)
    print("mtcnn.DLIB_BOX =", tuple(round(float(c), 4) for c in coefficients))
    print("mtcnn.TRACKED_SQUARE =", tuple(round(float(c), 3) for c in fit_tracked_square(data)))
    routes = {"MTCNN mapped (fitted now)": lambda bgr, box, f, i: mtcnn.dlib_box(f.boxes[i], f.landmarks[i], coefficients),
              "MTCNN mapped (facewire's constants)": lambda bgr, box, f, i: mtcnn.dlib_box(f.boxes[i], f.landmarks[i]),
              "MTCNN's box as it is": lambda bgr, box, f, i: mtcnn.box_as_is(f.boxes[i]),
              "HOG itself, the picture 10% larger": lambda bgr, box, f, i: hog_rescaled(bgr, box)}
    print("\n| route | faces | median distance to the HOG route | p90 | max | over 0.06 |\n|---|---|---|---|---|---|")
    for label, route in routes.items():
        distances = []
        for _, bgr, box, found, i in data:
            rgb = images.to_rgb(bgr)
            other = route(bgr, box, found, i)
            if other is None:
                continue
            ours, theirs = encoding.encode_faces(rgb, [boxes.clipped(other, *rgb.shape[:2]), box], MTCNN)
            distances.append(float(np.linalg.norm(ours - theirs)))
        d = np.array(distances)
        print(f"| {label} | {len(d)} | {np.median(d):.4f} | {np.percentile(d, 90):.4f} | {d.max():.4f} | {(d > 0.06).sum()} |")


if __name__ == "__main__":
    main()
