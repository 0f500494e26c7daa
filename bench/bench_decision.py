#!/usr/bin/env python3
"""Decision rules compared: faces named right, wrong names and strangers named, rule by rule, on the
accuracy sets, on pairs across different photos of the same people, and on strangers.

    .venv/bin/python bench/bench_decision.py [--detectors mtcnn,hog]

Every face is found and encoded once per detector, as the server does; the rules differ only in the decision,
made on each face's nearest person, the nearest other person and the face's quality:

- nearest: the nearest person within a fixed tolerance (today's: 0.6).
- margin: within 0.6, or within a ceiling when the next person is at least `margin` further.
- per person: within a threshold from the spread of the person's own photos (a factor times their largest
  distance apart, kept between 0.6 and a ceiling); 0.6 for a person of one photo.
- quality: 0.6 widened for good faces (GOOD_FACE) and narrowed for poor ones (POOR_FACE).

The sets, against the gallery of bench/face_sets.py (the shared known/ and the repo's Grace Hopper) unless
said: the accuracy sets (face_sets.all_sets) and the repo's group photo (Grace Hopper and Eileen Collins, at
1, 2 and 4 times its size); pairs: each photo of a gallery person with several against the rest of the
gallery, the clip's frames against its two portraits (Miranda and Lacamoire) and against the gallery
(Lacamoire at the piano, Barack Obama in the audience); strangers: ../shared/data/faces/strangers, every
face of ../shared/data/detect (group photos, split in two by file), the clip's Lin-Manuel Miranda (portrait
and frames) and its audience, the audience against the clip's portraits, and the gallery crosswise (each
person's photos against a gallery of the others). Who is who in the clip was read off its frames by hand
(clip_person).

Each family's parameters are chosen on the tuning sets (TUNING) of every detector: the most faces named
right with no wrong name and no stranger named, ties to the lowest projected false-name rate for the bench
gallery; the margin rule is chosen a second time among settings that project no more false names than
today's rule for 10^3 people. The impostor model (decision.ImpostorModel) is fitted to the first detector's
stranger faces' distances to each person of their gallery; the projections of per-person and quality
thresholds are bounds, at their largest.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import NormalDist
from typing import Callable, Iterable, Iterator, Sequence

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.face_sets import REPO_PROBES, SHARED_FACES, all_sets, make_gallery  # noqa: E402
from facewire.evaluate import Score, judge  # noqa: E402
from facewire.faces import images  # noqa: E402
from facewire.faces.boxes import box_area  # noqa: E402
from facewire.faces.decision import GALLERY_SIZES, UNKNOWN, ImpostorModel, Nearest, decide, false_name_rate  # noqa: E402
from facewire.faces.matching import distance_matrix, nearest_people, person_distances  # noqa: E402
from facewire.faces.quality import Quality, face_quality  # noqa: E402
from facewire.faces.recognize import find_faces, load_models  # noqa: E402
from facewire.faces.settings import Box, DetectorSettings, MatchSettings  # noqa: E402
from facewire.store.gallery import scan  # noqa: E402

SHARED_DETECT = ROOT.parent / "shared" / "data" / "detect"
CLIP = SHARED_FACES / "video" / "short_hamilton_clip.mp4"
CLIP_STEP = 5
"""Every 5th frame of the clip: a face barely changes between neighbouring frames."""
LACAMOIRE, MIRANDA, OBAMA, AUDIENCE = "alex_lacamoire", "lin-manuel-miranda", "obama", "audience"
CLIP_NAMES = {LACAMOIRE: "alex-lacamoire", MIRANDA: "lin-manuel-miranda"}
"""The clip's people under their names in its own gallery (the portraits' file names)."""
TODAY = MatchSettings(0.6, decision="nearest")
"""The rule before this benchmark."""
TUNING = ("reduced", "mosaics", "crops", "gallery photos", "strangers", "group photos A", "gallery crosswise")
"""The sets parameters are chosen on; the others are held out."""
GOOD_FACE = dict(width=40, sharpness=100.0, yaw=30.0)
"""quality: a face at least this wide and sharp, turned at most this far (degrees), is good..."""
POOR_FACE = dict(width=20, sharpness=30.0, yaw=60.0)
"""...and one narrower, blurrier or turned further is poor."""


@dataclass(frozen=True)
class Encoded:
    """A face found in a picture: its encoding, quality and box."""

    encoding: np.ndarray
    quality: Quality
    box: Box


@dataclass(frozen=True)
class Face:
    """A face against a gallery: its nearest people, its quality, and the spread of its nearest person's own
    photos (their largest distance apart; None for a person of one photo)."""

    nearest: Nearest
    quality: Quality
    spread: float | None


@dataclass(frozen=True)
class Picture:
    """The faces of one picture, and the names expected in it ("unknown": a face that must stay Unknown)."""

    faces: list[Face]
    expected: tuple[str, ...]


@dataclass(frozen=True)
class Trial:
    """A set: its pictures, whether all its faces are strangers, and each stranger face's distance to each
    person of its gallery (for the impostor model)."""

    name: str
    pictures: list[Picture]
    strangers: bool = False
    impostors: np.ndarray = field(default_factory=lambda: np.empty(0))
    detector: str = "mtcnn"

    @property
    def tuning(self) -> bool:
        return self.name in TUNING


@dataclass(frozen=True)
class Gallery:
    """Gallery photos: each one's person and its largest face."""

    people: tuple[str, ...]
    faces: tuple[Encoded, ...]

    @property
    def encodings(self) -> np.ndarray:
        return np.array([face.encoding for face in self.faces])

    def without(self, drop: Callable[[int, str], bool]) -> Gallery:
        kept = [i for i, person in enumerate(self.people) if not drop(i, person)]
        return Gallery(tuple(self.people[i] for i in kept), tuple(self.faces[i] for i in kept))


Rule = Callable[[Face], str]
"""A decision: the name a face gets (UNKNOWN for none)."""


# --- encoding every face once ----------------------------------------------------------------------------

def encoded(image: np.ndarray, settings: DetectorSettings) -> list[Encoded]:
    """Every face of a picture, as the server finds and encodes it, with its quality."""
    return [Encoded(face.encoding, face_quality(image, face.detection), face.box)
            for face in find_faces(image, settings)]


def gallery_of(folder: Path, settings: DetectorSettings) -> Gallery:
    """Each photo's largest face, as the gallery sync keeps it."""
    photos = [(photo.name, encoded(images.read_image(photo.path), settings)) for photo in scan(folder)]
    return Gallery(tuple(name for name, faces in photos if faces),
                   tuple(max(faces, key=lambda f: box_area(f.box)) for _, faces in photos if faces))


def clip_frames(settings: DetectorSettings) -> Iterator[tuple[int, list[Encoded]]]:
    """Every CLIP_STEP-th frame of the clip and its faces."""
    capture = cv2.VideoCapture(str(CLIP))
    for number in itertools.count():
        ok, frame = capture.read()
        if not ok:
            return
        if number % CLIP_STEP == 0:
            yield number, encoded(frame, settings)


def clip_person(frame: int, box: Box, largest: bool) -> str | None:
    """Who a face of the clip (640x360) is, read off its frames by hand; None for a false detection."""
    top, right, bottom, left = box
    x, y = (left + right) / 2, (top + bottom) / 2
    if frame < 20:  # the stage from afar: Lacamoire at the piano on the left, Miranda standing on the right
        return LACAMOIRE if x < 320 else MIRANDA
    if frame < 80:  # Lacamoire at the piano, close up in profile
        return LACAMOIRE
    if frame < 215:  # Miranda close up; anything smaller is a false detection (the back of a head)
        return MIRANDA if largest else None
    return OBAMA if 280 <= x < 360 and y < 125 else AUDIENCE  # the audience: Obama beside three women


# --- the sets ----------------------------------------------------------------------------------------------

def against(gallery: Gallery, probes: Sequence[tuple[list[Encoded], tuple[str, ...]]]) -> list[Picture]:
    """Pictures (their faces and expected names) judged against `gallery`."""
    spreads = person_spreads(gallery)
    pictures = []
    for faces, expected in probes:
        encodings = np.array([f.encoding for f in faces]).reshape(-1, 128)
        found = nearest_people(encodings, gallery.encodings, gallery.people) if faces else []
        pictures.append(Picture([Face(n, f.quality, spreads[n.name]) for n, f in zip(found, faces)], expected))
    return pictures


def person_spreads(gallery: Gallery) -> dict[str, float | None]:
    """Each person's largest distance between two of their photos (None with one photo)."""
    spreads: dict[str, float | None] = {}
    for person in set(gallery.people):
        mine = gallery.encodings[[i for i, p in enumerate(gallery.people) if p == person]]
        spreads[person] = float(distance_matrix(mine, mine).max()) if len(mine) > 1 else None
    return spreads


def impostor_distances(gallery: Gallery, faces: Sequence[Encoded]) -> np.ndarray:
    """Each stranger face's distance to each person of `gallery` (that person's nearest photo)."""
    if not faces:
        return np.empty(0)
    return person_distances(np.array([f.encoding for f in faces]), gallery.encodings, gallery.people)[1].ravel()


def strangers_trial(name: str, gallery: Gallery, faces: Sequence[Encoded]) -> Trial:
    """Faces of people not in `gallery`, each its own picture: any name is a stranger named."""
    return Trial(name, against(gallery, [([face], ()) for face in faces]), True, impostor_distances(gallery, faces))


def crosswise(gallery: Gallery) -> Trial:
    """Each person's photos against a gallery of everyone else."""
    pictures, impostors = [], []
    for person in sorted(set(gallery.people)):
        others = gallery.without(lambda i, p: p == person)
        mine = [face for p, face in zip(gallery.people, gallery.faces) if p == person]
        pictures += against(others, [([face], ()) for face in mine])
        impostors.append(impostor_distances(others, mine))
    return Trial("gallery crosswise", pictures, True, np.concatenate(impostors))


def gallery_pairs(gallery: Gallery) -> Trial:
    """Each photo of a person with several, against the gallery without that photo."""
    pictures = []
    for i, (person, face) in enumerate(zip(gallery.people, gallery.faces)):
        if gallery.people.count(person) > 1:
            pictures += against(gallery.without(lambda j, p: j == i), [([face], (person,))])
    return Trial("gallery photos", pictures)


def clip_trials(gallery: Gallery, portraits: Gallery, settings: DetectorSettings) -> list[Trial]:
    """The clip's labelled faces: pairs and strangers against its portraits and against the gallery."""
    people: dict[str, list[Encoded]] = {LACAMOIRE: [], MIRANDA: [], OBAMA: [], AUDIENCE: []}
    for frame, faces in clip_frames(settings):
        largest = max(faces, key=lambda f: box_area(f.box), default=None)
        for face in faces:
            who = clip_person(frame, face.box, face is largest)
            if who is not None:
                people[who].append(face)
    miranda_portrait = portraits.faces[portraits.people.index(CLIP_NAMES[MIRANDA])]
    own = [([face], (CLIP_NAMES[who],)) for who in (LACAMOIRE, MIRANDA) for face in people[who]]
    enrolled = [([face], (who,)) for who in (LACAMOIRE, OBAMA) for face in people[who]]
    return [Trial("clip, its portraits", against(portraits, own)),
            Trial("clip, the gallery", against(gallery, enrolled)),
            strangers_trial("clip audience, its portraits", portraits, people[AUDIENCE] + people[OBAMA]),
            strangers_trial("clip Miranda and audience", gallery,
                            [miranda_portrait, *people[MIRANDA], *people[AUDIENCE]])]


def all_trials(settings: DetectorSettings) -> tuple[list[Trial], int]:
    """Every set, and how many people the gallery has."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = make_gallery(Path(tmp) / "gallery")
        gallery = gallery_of(folder, settings)
        sets = all_sets(folder)
    trials = [Trial(name, against(gallery, [(encoded(case.image, settings), case.expected) for case in cases]))
              for name, cases in sets.items()]
    group = images.read_image(REPO_PROBES / "group_small_faces.jpg")
    trials.append(Trial("repo group photo", against(gallery, [
        (encoded(cv2.resize(group, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC), settings),
         ("grace_hopper", "unknown")) for scale in (1, 2, 4)])))
    trials.append(gallery_pairs(gallery))
    clip = clip_trials(gallery, gallery_of(SHARED_FACES / "video", settings), settings)
    trials += [t for t in clip if not t.strangers]
    strangers = [encoded(images.read_image(p), settings) for p in sorted((SHARED_FACES / "strangers").glob("*.jpg"))]
    groups = [encoded(images.read_image(p), settings) for p in sorted(SHARED_DETECT.glob("*.jpg"))]
    trials += [strangers_trial("strangers", gallery, [f for faces in strangers for f in faces]),
               strangers_trial("group photos A", gallery, [f for faces in groups[0::2] for f in faces]),
               strangers_trial("group photos B", gallery, [f for faces in groups[1::2] for f in faces]),
               *(t for t in clip if t.strangers), crosswise(gallery)]
    return [replace(trial, detector=settings.detector) for trial in trials], len(set(gallery.people))


# --- rules -------------------------------------------------------------------------------------------------

def settings_rule(settings: MatchSettings) -> Rule:
    """A rule of facewire.faces.decision, as the server runs it."""
    return lambda face: decide(face.nearest, settings).name


def per_person_rule(factor: float, ceiling: float) -> Rule:
    """Named within factor x the spread of the nearest person's photos, kept between 0.6 and `ceiling`."""
    def rule(face: Face) -> str:
        limit = TODAY.tolerance if face.spread is None else min(ceiling, max(TODAY.tolerance, factor * face.spread))
        return face.nearest.name if face.nearest.distance <= limit else UNKNOWN
    return rule


def quality_rule(widen: float, narrow: float) -> Rule:
    """Named within 0.6, plus `widen` for a good face, minus `narrow` for a poor one."""
    change = {"good": widen, "fair": 0.0, "poor": -narrow}

    def rule(face: Face) -> str:
        limit = TODAY.tolerance + change[grade(face.quality)]
        return face.nearest.name if face.nearest.distance <= limit else UNKNOWN
    return rule


def grade(quality: Quality) -> str:
    """"good" (at least as wide and sharp as GOOD_FACE, turned no further), "poor" (narrower, blurrier or turned
    further than POOR_FACE) or "fair". A face without landmarks has no pose to hold against it."""
    def meets(bounds: dict[str, float]) -> bool:
        turned = quality.yaw is not None and abs(quality.yaw) > bounds["yaw"]
        return quality.width >= bounds["width"] and quality.sharpness >= bounds["sharpness"] and not turned
    return "good" if meets(GOOD_FACE) else "fair" if meets(POOR_FACE) else "poor"


@dataclass(frozen=True)
class Candidate:
    """A rule with its parameters, and the decision.py settings whose projection is its own (`exact`) or bounds
    it from above (a fixed threshold at the rule's largest)."""

    label: str
    rule: Rule
    settings: MatchSettings
    exact: bool = True


def offered(label: str, settings: MatchSettings) -> Candidate:
    return Candidate(label, settings_rule(settings), settings)


def fixed(tolerance: float) -> MatchSettings:
    """The nearest rule at `tolerance`."""
    return MatchSettings(tolerance, decision="nearest")


def families() -> dict[str, list[Candidate]]:
    """Every rule family over its grid of parameters."""
    ceilings = np.round(np.arange(0.61, 0.701, 0.01), 3)
    return {
        "nearest": [offered(f"nearest {t:g}", fixed(t)) for t in np.round(np.arange(0.55, 0.701, 0.01), 3)],
        "margin": [offered(f"margin: ceiling {c:g}, margin {m:g}", MatchSettings(0.6, "nearest", None, "margin", c, m))
                   for c in ceilings for m in np.round(np.arange(0.03, 0.201, 0.01), 3)],
        "per person": [Candidate(f"per person: {f:g} x spread, ceiling {c:g}", per_person_rule(f, c),
                                 fixed(c), False)
                       for c in ceilings for f in np.round(np.arange(1.3, 1.901, 0.05), 3)],
        "quality": [Candidate(f"quality: good +{w:g}, poor -{n:g}", quality_rule(w, n), fixed(0.6 + w), False)
                    for w in np.round(np.arange(0.0, 0.081, 0.01), 3) for n in (0.0, 0.02, 0.04, 0.06)],
    }


# --- scoring -----------------------------------------------------------------------------------------------

TODAY_RULE = settings_rule(TODAY)


def scored(trial: Trial, rule: Rule) -> Score:
    return sum((judge([rule(face) for face in picture.faces], picture.expected) for picture in trial.pictures),
               Score(0, 0, 0, 0))


@dataclass(frozen=True)
class Totals:
    """A rule over a group of sets: named right, wrong names (strangers aside), strangers named."""

    right: int
    wrong: int
    strangers: int

    def __str__(self) -> str:
        return f"{self.right} right, {self.wrong} wrong, {self.strangers} strangers named"


def totals(trials: Iterable[Trial], rule: Rule) -> Totals:
    scores = [(trial.strangers, scored(trial, rule)) for trial in trials]
    return Totals(sum(s.correct for _, s in scores), sum(s.wrong for strange, s in scores if not strange),
                  sum(s.wrong for strange, s in scores if strange))


@dataclass(frozen=True)
class Projection:
    """False-name rates projected by an impostor model, for the bench gallery's people and for GALLERY_SIZES."""

    model: ImpostorModel
    people: int

    def rate(self, candidate: Candidate, people: int) -> float:
        return false_name_rate(candidate.settings, people, self.model)

    def keeps_large_galleries(self, candidate: Candidate) -> bool:
        """No more false names than today's projected for 10^3 people (to 0.1 percentage point)."""
        return self.rate(candidate, GALLERY_SIZES[0]) <= false_name_rate(TODAY, GALLERY_SIZES[0], self.model) + 1e-3


def chosen(candidates: list[Candidate], tuning: list[Trial], projection: Projection,
           guard: Callable[[Candidate], bool] = lambda candidate: True) -> Candidate:
    """The candidate naming the most faces right on the tuning sets with no wrong name and no stranger named
    (and passing `guard`); ties to the lowest projected false-name rate for the bench gallery."""
    def key(candidate: Candidate) -> tuple[int, float]:
        t = totals(tuning, candidate.rule)
        feasible = t.wrong == 0 and t.strangers == 0 and guard(candidate)
        return (t.right if feasible else -1, -projection.rate(candidate, projection.people))
    return max(candidates, key=key)


def table(trials: list[Trial], candidates: list[Candidate]) -> list[str]:
    """Rules x sets: named right / wrong names, or strangers named; totals over the tuning and held-out sets."""
    rows = ["| set | detector | faces | " + " | ".join(c.label for c in candidates) + " |",
            "|---|---|---" + "|---" * len(candidates) + "|"]
    for trial in trials:
        faces = f"{sum(len(p.faces) for p in trial.pictures)} strangers" if trial.strangers else \
            f"{scored(trial, TODAY_RULE).expected} to name"
        cells = [f"{scored(trial, c.rule).wrong} named" if trial.strangers else
                 "{0.correct} / {0.wrong}".format(scored(trial, c.rule)) for c in candidates]
        rows.append(f"| {trial.name}{' (tuning)' if trial.tuning else ''} | {trial.detector} | {faces} | "
                    + " | ".join(cells) + " |")
    groups = {"tuning sets": [t for t in trials if t.tuning], "held-out sets": [t for t in trials if not t.tuning],
              "all sets": trials}
    for label, group in groups.items():
        rows.append(f"| **{label}** | | | " + " | ".join(str(totals(group, c.rule)) for c in candidates) + " |")
    return rows


# --- strangers ---------------------------------------------------------------------------------------------

def impostor_lines(distances: np.ndarray, model: ImpostorModel) -> list[str]:
    """The impostor distances against the normal fitted to their lower half and the one of their moments."""
    moments = ImpostorModel(float(distances.mean()), float(distances.std()))
    lines = [f"impostor distances: {len(distances)} (stranger face, gallery person) pairs, the smallest "
             f"{distances.min():.3f}; a normal fitted to their lower half (decision.ImpostorModel.fit): mean "
             f"{model.mean:.4f}, sd {model.sd:.4f}; by their moments: mean {moments.mean:.4f}, sd {moments.sd:.4f}",
             "", "| quantile | measured | fitted to the lower half | by moments |", "|---|---|---|---|"]
    for level in (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5):
        lines.append(f"| {level:g} | {np.quantile(distances, level):.3f} | {quantile(model, level):.3f} | "
                     f"{quantile(moments, level):.3f} |")
    return lines


def quantile(model: ImpostorModel, level: float) -> float:
    return NormalDist(model.mean, model.sd).inv_cdf(level)


def projection_table(trials: list[Trial], candidates: list[Candidate], projection: Projection) -> list[str]:
    """Each rule: strangers named (measured), p at its tolerance, and the projected false-name rates."""
    strangers = [t for t in trials if t.strangers]
    faces = sum(len(p.faces) for t in strangers for p in t.pictures)
    sizes = (projection.people, *GALLERY_SIZES)
    rows = ["| rule | strangers named | p(tolerance) | " + " | ".join(f"{n} people" for n in sizes) + " |",
            "|---|---|---" + "|---" * len(sizes) + "|"]
    for c in candidates:
        bound = "" if c.exact else "<= "
        rows.append(f"| {c.label} | {totals(strangers, c.rule).strangers} of {faces} | "
                    f"{projection.model.p(c.settings.tolerance):.1e} | "
                    + " | ".join(f"{bound}{projection.rate(c, n):.2%}" for n in sizes) + " |")
    return rows


def verdict(trials: list[Trial], default: Candidate, projection: Projection) -> str:
    """Whether `default` replaces today's rule: more faces named right on every set taken together, no more
    wrong names, no more strangers named, and large galleries kept as today."""
    mine, today = totals(trials, default.rule), totals(trials, TODAY_RULE)
    better = (mine.right > today.right and mine.wrong <= today.wrong and mine.strangers <= today.strangers
              and projection.keeps_large_galleries(default))
    return (f"default: {default.label if better else 'nearest 0.6, unchanged'} ({mine} against today's {today}"
            f"{'' if projection.keeps_large_galleries(default) else '; more false names projected at 10^3 people'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detectors", default="mtcnn,hog",
                        help="every set is run with each (default: %(default)s); the impostor model is fitted to "
                             "the first one's strangers")
    detectors = parser.parse_args().detectors.split(",")
    trials: list[Trial] = []
    for detector in detectors:
        settings = DetectorSettings(detector, detect_threads="1")
        load_models(settings)
        found, people = all_trials(settings)
        trials += found
    tuning = [t for t in trials if t.tuning]
    distances = np.concatenate([t.impostors for t in trials if t.strangers and t.detector == detectors[0]])
    projection = Projection(ImpostorModel.fit(distances), people)
    picks = [offered("nearest 0.6 (today)", TODAY)]
    for family, candidates in families().items():
        picks.append(chosen(candidates, tuning, projection))
        print(f"{family}: {picks[-1].label}; on the tuning sets {totals(tuning, picks[-1].rule)}", flush=True)
    default = chosen(families()["margin"], tuning, projection, projection.keeps_large_galleries)
    picks.append(replace(default, label=f"{default.label} (large galleries as today)"))
    print(f"margin, no more false names projected at 10^3 people than today: {default.label}; "
          f"on the tuning sets {totals(tuning, default.rule)}")
    print()
    print("\n".join(table(trials, picks)))
    print()
    print("\n".join(impostor_lines(distances, projection.model)))
    print()
    print("\n".join(projection_table(trials, picks, projection)))
    print()
    print(verdict(trials, default, projection))


if __name__ == "__main__":
    main()
