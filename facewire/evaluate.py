"""Choose a tolerance from data: accuracy, wrong names and missed faces over a range of tolerances, and how
often strangers get a name.

    python -m facewire.evaluate GALLERY PROBES LABELS [--from 0.3 --to 0.8 --step 0.05]
                                [--decision margin --tolerance 0.6 --ceiling 0.63 --margin 0.05]
                                [--strangers DIR] [--max-false-name-rate R]

LABELS is JSON: {"some/dir/photo.jpg": ["name", "name", "unknown"], ...}, matched to the
files in PROBES by file name; "unknown" marks a face that must not be given a known name.
Every probe is detected and encoded once; only the matching is repeated per tolerance and rule.

Strangers are every face in DIR's photos and each gallery photo against a gallery of the other people. The
report gives how many the rule names, and projects the false-name rate to larger galleries from their
distances to each gallery person (see facewire.faces.decision); --max-false-name-rate recommends the
largest tolerance (and ceiling) that keeps the projection under R.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from dataclasses import astuple, dataclass, replace
from pathlib import Path
from typing import Iterable

import numpy as np

from facewire.args import add_decision_options, bounded, folder, match_settings
from facewire.faces import images
from facewire.faces.decision import (
    GALLERY_SIZES,
    IMPOSTOR_MODEL,
    ImpostorModel,
    describe,
    false_name_rate,
    percent,
    projection_lines,
    recommended,
)
from facewire.faces.matching import UNKNOWN, match_faces, person_distances
from facewire.faces.recognize import find_faces
from facewire.faces.settings import DETECTORS, DetectorSettings, MatchSettings
from facewire.store.gallery import Gallery
from facewire.store.live import folder_gallery

MIN_PAIRS = 100
"""Fewer (stranger face, gallery person) distances than this are too few to fit: the built-in model is used."""


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


@dataclass(frozen=True)
class Strangers:
    """Faces of people not in the gallery: how many, how many the rule named, and their distances to each
    gallery person (each person's nearest photo), for the impostor model."""

    faces: int
    named: int
    distances: np.ndarray

    def model(self) -> ImpostorModel:
        """The impostor model fitted to these distances, or the built-in one when they are fewer than MIN_PAIRS."""
        return ImpostorModel.fit(self.distances) if len(self.distances) >= MIN_PAIRS else IMPOSTOR_MODEL


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
          settings: MatchSettings) -> Score:
    """All probes under one rule, added up."""
    total = Score(0, 0, 0, 0)
    for name, encodings in encoded.items():
        matches = match_faces(encodings, gallery.encodings, gallery.names, settings)
        total += judge((m.name for m in matches), labels[name])
    return total


def rules(settings: MatchSettings) -> dict[str, MatchSettings]:
    """The rules the table compares at `settings`' tolerance: nearest, margin (with its ceiling and margin), knn."""
    return {"nearest": replace(settings, method="nearest", decision="nearest"),
            "margin": replace(settings, method="nearest", decision="margin"),
            "knn": replace(settings, method="knn", decision="nearest")}


def table(gallery: Gallery, encoded: dict[str, np.ndarray], labels: dict[str, list[str]],
          settings: MatchSettings, tolerances: list[float]) -> list[str]:
    rows = ["| tolerance | rule | accuracy | correct | wrong names | missed |", "|---|---|---|---|---|---|"]
    for tolerance in tolerances:
        for rule, rule_settings in rules(settings.with_tolerance(tolerance)).items():
            s = score(gallery, encoded, labels, rule_settings)
            rows.append(f"| {tolerance:.2f} | {rule} | {s.accuracy:.0%} | {s.correct}/{s.expected} | "
                        f"{s.wrong} | {s.missed} |")
    return rows


def strangers(gallery: Gallery, faces: np.ndarray, settings: MatchSettings) -> Strangers:
    """`faces` (of people not in the gallery) against it, and each gallery person's photos against the others."""
    names = np.asarray(gallery.names)
    trials = [(faces, gallery.encodings, gallery.names)] if len(faces) else []
    trials += [(gallery.encodings[names == person], gallery.encodings[names != person], list(names[names != person]))
               for person in gallery.people if len(gallery.people) > 1]
    named = sum(m.name != UNKNOWN for probes, known, known_names in trials
                for m in match_faces(probes, known, known_names, settings))
    distances = [person_distances(probes, known, known_names)[1].ravel() for probes, known, known_names in trials]
    return Strangers(sum(len(probes) for probes, _, _ in trials), named,
                     np.concatenate(distances) if distances else np.empty(0))


def stranger_faces(folder: Path | None, settings: DetectorSettings) -> np.ndarray:
    """The encodings of every face in the photos of `folder` (none without one)."""
    paths = sorted(p for p in folder.iterdir() if images.is_image_path(p)) if folder else []
    return np.concatenate([_encodings(path, settings) for path in paths]) if paths else np.empty((0, 128))


def stranger_report(found: Strangers, settings: MatchSettings, people: int, extra: int) -> list[str]:
    """How many strangers the rule named, the impostor model, and the projection to larger galleries."""
    model = found.model()
    rate = found.named / found.faces if found.faces else 0.0
    fitted = (f"fitted to the lower half of {len(found.distances)} (stranger face, gallery person) distances"
              if len(found.distances) >= MIN_PAIRS else
              f"the built-in model ({len(found.distances)} distances are fewer than {MIN_PAIRS} to fit)")
    margin = f", p({settings.ceiling:g}) = {model.p(settings.ceiling):.2e}" if settings.decision == "margin" else ""
    return [f"strangers: {found.faces} faces ({extra} in --strangers, {found.faces - extra} gallery photos against "
            f"the other people); named under {describe(settings)}: {found.named} ({percent(rate)})",
            f"impostor model: N({model.mean:.4f}, {model.sd:.4f}), {fitted}; one enrolled person is within "
            f"p({settings.tolerance:g}) = {model.p(settings.tolerance):.2e}{margin} of a stranger",
            *projection_lines(settings, people, model)]


def recommendations(gallery: Gallery, encoded: dict[str, np.ndarray], labels: dict[str, list[str]],
                    settings: MatchSettings, rate: float, model: ImpostorModel) -> list[str]:
    """The largest tolerance (and ceiling) keeping the projected false-name rate under `rate`, per gallery size,
    with the probes named right there."""
    people = len(gallery.people)
    rows = [f"to keep the projected false-name rate under {percent(rate)} ({describe(settings)}, N({model.mean:.4f}, "
            f"{model.sd:.4f})):", "| people | tolerance | ceiling | projected | correct |", "|---|---|---|---|---|"]
    for size in dict.fromkeys((people, *GALLERY_SIZES)):
        chosen = recommended(settings, size, rate, model)
        s = score(gallery, encoded, labels, chosen)
        ceiling = f"{chosen.ceiling:.4g}" if chosen.decision == "margin" else ""
        rows.append(f"| {size}{' (this gallery)' if size == people else ''} | {chosen.tolerance:.4g} | {ceiling} | "
                    f"{percent(false_name_rate(chosen, size, model))} | {s.correct}/{s.expected} |")
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
    add_decision_options(parser)
    parser.add_argument("--strangers", type=folder, metavar="DIR",
                        help="photos of people not in the gallery: every face in them is a stranger")
    parser.add_argument("--max-false-name-rate", type=bounded(float, 0, 1, above=True), metavar="R",
                        help="recommend the tolerance (and ceiling) that keeps the projected chance of a stranger "
                             "getting a name under R (e.g. 0.01), for this gallery and for 10^3-10^5 people")
    args = parser.parse_args()
    matching = match_settings(parser, args)
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
    print("\n".join(table(gallery, encoded, labels, matching, tolerances)))
    extra = stranger_faces(args.strangers, settings)
    found = strangers(gallery, extra, matching)
    print()
    print("\n".join(stranger_report(found, matching, len(gallery.people), len(extra))))
    if args.max_false_name_rate is not None:
        print()
        print("\n".join(recommendations(gallery, encoded, labels, matching, args.max_false_name_rate, found.model())))


if __name__ == "__main__":
    main()
