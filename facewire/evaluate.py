"""Choose a tolerance from data: accuracy, wrong names and missed faces over a range of tolerances.

    python -m facewire.evaluate GALLERY PROBES LABELS [--from 0.3 --to 0.8 --step 0.05]

LABELS is JSON: {"some/dir/photo.jpg": ["name", "name", "unknown"], ...}, matched to the
files in PROBES by file name; "unknown" marks a face that must not be given a known name.
Every probe is detected and encoded once; only the matching is repeated per tolerance.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from facewire.faces import images
from facewire.faces.matching import UNKNOWN, match_faces
from facewire.faces.recognize import find_faces
from facewire.faces.settings import DETECTORS, METHODS, DetectorSettings, MatchSettings
from facewire.store.gallery import Gallery
from facewire.store.live import folder_gallery


@dataclass(frozen=True)
class Score:
    """Counts over all probes, comparing the known names expected and found in each photo."""

    expected: int  # known names the labels ask for
    correct: int  # ...of which were found
    wrong: int  # known names given that the labels do not have (a wrong person, or an "unknown" face named)
    missed: int  # expected names not found (face missed, or called Unknown or someone else)

    @property
    def accuracy(self) -> float:
        return self.correct / self.expected if self.expected else 1.0

    def __add__(self, other: Score) -> Score:
        return Score(*(a + b for a, b in zip(astuple(self), astuple(other))))


def load_labels(path: Path) -> dict[str, list[str]]:
    """File name -> expected names; keys starting with "_" are comments."""
    labels = json.loads(Path(path).read_text())
    return {Path(key).name: names for key, names in labels.items() if not key.startswith("_")}


def encode_probes(probes: Path, names: list[str], settings: DetectorSettings) -> dict[str, np.ndarray]:
    """File name -> (faces, 128) encodings, for every labelled probe."""
    return {name: _encodings(probes / name, settings) for name in names}


def _encodings(path: Path, settings: DetectorSettings) -> np.ndarray:
    faces = find_faces(images.read_image(path), settings)
    return np.array([face.encoding for face in faces]) if faces else np.empty((0, 128))


def judge(found: Iterable[str], expected: Iterable[str]) -> Score:
    """One photo: the names found (UNKNOWN for unnamed faces) against the labels ("unknown" likewise)."""
    named = Counter(n for n in found if n != UNKNOWN)
    known = Counter(n for n in expected if n != "unknown")
    return Score(sum(known.values()), sum((named & known).values()), sum((named - known).values()),
                 sum((known - named).values()))


def score(gallery: Gallery, encoded: dict[str, np.ndarray], labels: dict[str, list[str]],
          tolerance: float, method: str = "nearest") -> Score:
    """All probes at one tolerance, added up."""
    total = Score(0, 0, 0, 0)
    for name, encodings in encoded.items():
        matches = match_faces(encodings, gallery.encodings, gallery.names, MatchSettings(tolerance, method))
        total += judge((m.name for m in matches), labels[name])
    return total


def table(gallery: Gallery, encoded: dict[str, np.ndarray], labels: dict[str, list[str]],
          tolerances: list[float]) -> list[str]:
    rows = ["| tolerance | match | accuracy | correct | wrong names | missed |", "|---|---|---|---|---|---|"]
    for tolerance in tolerances:
        for method in METHODS:
            s = score(gallery, encoded, labels, tolerance, method)
            rows.append(f"| {tolerance:.2f} | {method} | {s.accuracy:.0%} | {s.correct}/{s.expected} | "
                        f"{s.wrong} | {s.missed} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("gallery", type=Path, help="a gallery folder, as server.py --known-faces takes")
    parser.add_argument("probes", type=Path, help="folder of labelled photos")
    parser.add_argument("labels", type=Path, help="JSON: photo -> expected names")
    parser.add_argument("--from", dest="low", type=float, default=0.30)
    parser.add_argument("--to", dest="high", type=float, default=0.80)
    parser.add_argument("--step", type=float, default=0.05)
    parser.add_argument("--detector", choices=DETECTORS, default=DetectorSettings.detector,
                        help="face detector, as the server's --detector (default: %(default)s)")
    args = parser.parse_args()
    settings = DetectorSettings(args.detector)
    labels = load_labels(args.labels)
    missing = [name for name in labels if not (args.probes / name).is_file()]
    if missing:
        raise SystemExit(f"labelled photos not in {args.probes}: {', '.join(missing)}")
    with tempfile.TemporaryDirectory() as tmp:  # never writes into the gallery being judged
        gallery, _ = folder_gallery(args.gallery, settings, f"sqlite:///{tmp}/gallery.db")
    encoded = encode_probes(args.probes, sorted(labels), settings)
    tolerances = list(np.round(np.arange(args.low, args.high + args.step / 2, args.step), 4))
    print(f"{len(gallery.people)} people, {len(gallery.names)} photos; {len(encoded)} probes, "
          f"{sum(len(e) for e in encoded.values())} faces found")
    print("\n".join(table(gallery, encoded, labels, tolerances)))


if __name__ == "__main__":
    main()
