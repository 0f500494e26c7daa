#!/usr/bin/env python3
"""Accuracy benchmark: facewire's default against the original demo's and face_recognition's
stock recipes, in one run, on the shared photos and on hard cases made from them.

For each set (see bench/face_sets.py) and recipe it prints the faces found, the faces
named right, the wrong names (a known name the labels do not have), the missed names,
and on how many pictures the recipe names fewer faces right than the original demo.
facewire runs as the real server (its defaults) answering the real client; the two
other recipes run in this process with face_recognition's calls.

    .venv/bin/python bench/bench_accuracy.py [--sets reduced,mosaics] [--enlargements 0,40,80,120,160]
                                             [--mirrors 0,32,1000] [--scans]

`--enlargements`, `--mirrors` and `--scans` also measure three choices, facewire in this process: named
right on the small-face sets when small faces are enlarged to each size before encoding (0: not
enlarged), when faces under each size are encoded with their mirror image (0: none), and when HOG scans
small pictures in grey rather than colour.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.face_sets import SMALL_FACE_SETS, Case, all_sets, make_gallery  # noqa: E402
from bench.recipes import DemoRecipe, StockRecipe  # noqa: E402
from facewire.client.client import Client  # noqa: E402
from facewire.evaluate import Score, judge  # noqa: E402
from facewire.faces import encoding, hog  # noqa: E402
from facewire.faces.matching import match_faces  # noqa: E402
from facewire.faces.recognize import find_faces  # noqa: E402
from facewire.faces.settings import DetectorSettings, MatchSettings  # noqa: E402
from facewire.process import ServerProcess  # noqa: E402
from facewire.store.live import folder_gallery  # noqa: E402

Names = Callable[[Sequence[Case]], list[list[str]]]
Variant = tuple[Callable[[], object], DetectorSettings]
"""A way to run facewire in this process: a context manager factory that changes one step, and the settings."""


@dataclass(frozen=True)
class Outcome:
    """A recipe on a set: the totals, and the named-right count of each picture."""

    found: int
    score: Score
    right_per_case: list[int]
    seconds: float


def run(names_of: Names, cases: Sequence[Case]) -> Outcome:
    started = time.perf_counter()
    found = names_of(cases)
    scores = [judge(names, case.expected) for names, case in zip(found, cases, strict=True)]
    total = sum(scores, Score(0, 0, 0, 0))
    return Outcome(sum(map(len, found)), total, [s.correct for s in scores], time.perf_counter() - started)


def server_names(address: str) -> Names:
    """facewire as users get it: each picture sent to the server, the names read from the reply."""
    def names_of(cases: Sequence[Case]) -> list[list[str]]:
        with Client(address, timeout=120) as client:
            return [result.names for result in client.recognize_many((c.image for c in cases), annotate=False)]
    return names_of


def recipe_names(recipe: StockRecipe) -> Names:
    return lambda cases: [recipe.names_in(case.image) for case in cases]


def compare(sets: dict[str, list[Case]], recipes: dict[str, Names]) -> dict[str, dict[str, Outcome]]:
    """Every recipe on every set: {set: {recipe: Outcome}}."""
    return {name: {label: run(names_of, cases) for label, names_of in recipes.items()} for name, cases in sets.items()}


def table(sets: dict[str, list[Case]], results: dict[str, dict[str, Outcome]], demo: str) -> list[str]:
    rows = ["| set | pictures | faces to name | recipe | faces found | named right | wrong names | missed "
            "| pictures behind the demo | seconds |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, outcomes in results.items():
        for label, outcome in outcomes.items():
            behind = sum(mine < theirs for mine, theirs in zip(outcome.right_per_case, outcomes[demo].right_per_case))
            s = outcome.score
            rows.append(f"| {name} | {len(sets[name])} | {s.expected} | {label} | {outcome.found} | {s.correct} | "
                        f"{s.wrong} | {s.missed} | {behind} | {outcome.seconds:.1f} |")
    return rows


def variant_table(sets: dict[str, list[Case]], gallery: Path, variants: dict[str, Variant]) -> list[str]:
    """Named right on the small-face sets by facewire in this process, under each variant."""
    rows = ["| variant | " + " | ".join(SMALL_FACE_SETS) + " | all |", "|---" * (len(SMALL_FACE_SETS) + 2) + "|"]
    for label, (variant, settings) in variants.items():
        with variant(), tempfile.TemporaryDirectory() as tmp:
            known, _ = folder_gallery(gallery, settings, f"sqlite:///{tmp}/gallery.db")
            counts = [sum((_judged(case, known, settings) for case in sets[name]), Score(0, 0, 0, 0))
                      for name in SMALL_FACE_SETS]
        cells = [f"{s.correct} right, {s.wrong} wrong" for s in counts]
        rows.append(f"| {label} | " + " | ".join(cells) + f" | {sum(s.correct for s in counts)} |")
    return rows


def _judged(case: Case, known, settings: DetectorSettings) -> Score:
    faces = find_faces(case.image, settings)
    encodings = np.array([face.encoding for face in faces]) if faces else np.empty((0, 128))
    return judge((m.name for m in match_faces(encodings, known.encodings, known.names, MatchSettings(0.6))), case.expected)


@contextmanager
def patched(module: object, **constants: object) -> Iterator[None]:
    """A module of facewire's with some constants changed, for the time of a variant."""
    saved = {name: getattr(module, name) for name in constants}
    for name, value in constants.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)


def variants(enlargements: str, mirrors: str, scans: bool) -> dict[str, Variant]:
    """The variants asked for on the command line: enlargements and mirrors with the default detector, scans
    with HOG's."""
    chosen: dict[str, Variant] = {}
    for size in filter(None, enlargements.split(",")):
        label = f"small faces enlarged to {size} px" if int(size) else "small faces not enlarged"
        chosen[label] = (partial(patched, encoding, ENCODE_FACE=int(size)), DetectorSettings())
    for size in filter(None, mirrors.split(",")):
        label = f"faces under {size} px encoded with their mirror image" if int(size) else "no face mirrored"
        chosen[label] = (partial(patched, encoding, MIRROR_FACE=int(size)), DetectorSettings())
    if scans:
        hog_settings = DetectorSettings(detector="hog")
        chosen["hog: small pictures scanned in grey"] = (partial(patched, hog, COLOUR_SCALE=math.inf), hog_settings)
        chosen["hog: small pictures scanned in colour (its default)"] = (partial(patched, hog), hog_settings)
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="shared,reduced,mosaics,dark,crops",
                        help="comma-separated sets to run (default: %(default)s)")
    parser.add_argument("--enlargements", default="",
                        help="comma-separated face widths (px) to compare for encoding small faces, 0 = none")
    parser.add_argument("--mirrors", default="",
                        help="comma-separated face widths (px) under which faces are encoded with their mirror "
                             "image, to compare (0 = none)")
    parser.add_argument("--scans", action="store_true", help="compare scanning small pictures in grey and colour")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        gallery = make_gallery(Path(tmp) / "gallery")
        sets = all_sets(gallery)
        chosen = {name: sets[name] for name in args.sets.split(",")}
        print(f"sets: {', '.join(f'{n} ({len(c)} pictures)' for n, c in chosen.items())}; gallery: "
              f"the shared known/ and the repo's grace_hopper.jpg", flush=True)
        with ExitStack() as servers:
            mtcnn, hog_server = (servers.enter_context(ServerProcess(gallery, Path(tmp) / f"server-{detector}.log", "--db",
                                                                     f"sqlite:///{Path(tmp) / f'gallery-{detector}.db'}",
                                                                     "--detector", detector))
                                 for detector in ("mtcnn", "hog"))
            recipes = {"facewire (default: mtcnn)": server_names(mtcnn.address),
                       "facewire --detector hog": server_names(hog_server.address),
                       "face_recognition stock": recipe_names(StockRecipe(gallery)),
                       "original demo": recipe_names(DemoRecipe(gallery))}
            results = compare(chosen, recipes)
        print("\n".join(table(chosen, results, demo="original demo")))
        chosen_variants = variants(args.enlargements, args.mirrors, args.scans)
        if chosen_variants:
            print()
            print("\n".join(variant_table(sets, gallery, chosen_variants)))


if __name__ == "__main__":
    main()
