"""Name face encodings against a gallery: the nearest person under a decision rule, or a vote of the k nearest.

A gallery given as an array is searched with one matrix operation over all of it; a FaceIndex
(facewire.faces.index) is asked for the nearest photos only. Each face's nearest person and the nearest
other person go to facewire.faces.decision, which names the face or not.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from facewire.faces.decision import (
    BEYOND_TOLERANCE,
    UNKNOWN,
    VOTE,
    WITHIN_TOLERANCE,
    Nearest,
    Verdict,
    decide,
)
from facewire.faces.index import FaceIndex
from facewire.faces.settings import MatchSettings

FIRST_K = 16
"""Photos an index is first asked for, to find each face's nearest other person (more when all are one person's)."""


@dataclass(frozen=True)
class Match:
    """The gallery's verdict on one face: a name, its distance, a confidence in [0, 1], the margin to the
    next person (None: fewer than two people, or a vote) and the rule that decided (decision.py)."""

    name: str
    distance: float
    confidence: float
    margin: float | None = None
    decision: str = WITHIN_TOLERANCE


def confidence(distance: float, tolerance: float) -> float:
    """1 at distance 0, 0.5 exactly at the tolerance, 0 at twice the tolerance (linear between)."""
    if math.isnan(distance) or tolerance <= 0:
        return 0.0
    return float(np.clip(1.0 - distance / (2.0 * tolerance), 0.0, 1.0))


def distance_matrix(encodings: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Euclidean distances, faces x known photos, in one vectorised operation."""
    squared = (
        np.einsum("ij,ij->i", encodings, encodings)[:, None]
        + np.einsum("ij,ij->i", known, known)[None, :]
        - 2.0 * encodings @ known.T
    )
    return np.sqrt(np.maximum(squared, 0.0))


def match_faces(encodings: np.ndarray, known: np.ndarray | FaceIndex, names: Sequence[str] | None,
                settings: MatchSettings) -> list[Match]:
    """Name each encoding under `settings`; `names[i]` is the person of `known[i]`, or None for a FaceIndex.

    nearest: the person of the nearest photo, named or not by `settings.decision` (decision.py).
    knn: the k nearest photos within `tolerance` vote, each weighted by 1/distance
    (k defaults to the square root of the number of photos, as in face_recognition's
    KNN example); no photo within the tolerance means UNKNOWN.
    """
    if len(encodings) == 0:
        return []
    if len(known) == 0:
        return [_judged(decide(None, settings), settings.tolerance) for _ in encodings]
    if settings.method == "knn":
        return _knn(encodings, known, names, settings)
    return [_judged(decide(nearest, settings), settings.tolerance)
            for nearest in nearest_people(encodings, known, names)]


def nearest_people(encodings: np.ndarray, known: np.ndarray | FaceIndex,
                   names: Sequence[str] | None) -> list[Nearest]:
    """Each face's nearest photo's person and distance, and its distance to the nearest other person.

    Over an approximate index (decision.py), the other person may be missed or found further than it is."""
    if isinstance(known, FaceIndex):
        return _nearest_in_index(encodings, known)
    distances = distance_matrix(encodings, known)
    labels = np.asarray(names)
    nearest = distances.argmin(axis=1)
    best = distances[np.arange(len(encodings)), nearest]
    other = np.where(labels[None, :] == labels[nearest][:, None], np.inf, distances).min(axis=1)
    return [Nearest(names[i], float(d), None if math.isinf(o) else float(o)) for i, d, o in zip(nearest, best, other)]


def person_distances(encodings: np.ndarray, known: np.ndarray, names: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The gallery's people (sorted) and each face's distance to each of them (their nearest photo): faces x people."""
    people = sorted(set(names))
    distances = distance_matrix(encodings, known)
    columns = [distances[:, [i for i, name in enumerate(names) if name == person]].min(axis=1) for person in people]
    return people, np.stack(columns, axis=1) if people else np.empty((len(encodings), 0))


def _nearest_in_index(encodings: np.ndarray, index: FaceIndex) -> list[Nearest]:
    """nearest_people over an index: FIRST_K photos, then eight times more for faces whose photos were all one
    person's, until the index is exhausted."""
    found: dict[int, Nearest] = {}
    pending, k = np.arange(len(encodings)), min(len(index), FIRST_K)
    while True:
        distances, ids = index.search(encodings[pending], k)
        for face, row, row_names in zip(pending, distances, index.names_of(ids)):
            found[int(face)] = _nearest_in_row(row, row_names)
        pending = np.array([face for face in pending if found[int(face)].other is None], int)
        if len(pending) == 0 or k >= len(index):
            return [found[face] for face in range(len(encodings))]
        k = min(len(index), 8 * k)


def _nearest_in_row(row: np.ndarray, names: Sequence[str]) -> Nearest:
    """A search result's nearest person, and the first photo of someone else in it (names "" are padding)."""
    other = next((float(d) for d, name in zip(row, names) if name and name != names[0]), None)
    return Nearest(names[0], float(row[0]), other)


def _judged(verdict: Verdict, tolerance: float) -> Match:
    return Match(verdict.name, verdict.distance, confidence(verdict.distance, tolerance), verdict.margin,
                 verdict.decision)


def _knn(encodings: np.ndarray, known: np.ndarray | FaceIndex, names: Sequence[str] | None,
         settings: MatchSettings) -> list[Match]:
    """The vote of the k nearest photos of each face (sorted, so that `_vote` keeps them)."""
    k = settings.k or max(1, round(math.sqrt(len(known))))
    if isinstance(known, FaceIndex):
        distances, ids = known.search(encodings, k)
        return [_vote(row, row_names, settings.tolerance, k)
                for row, row_names in zip(distances, known.names_of(ids))]
    return [_vote(row, names, settings.tolerance, k) for row in distance_matrix(encodings, known)]


def _vote(row: np.ndarray, names: Sequence[str], tolerance: float, k: int) -> Match:
    neighbours = np.argsort(row)[:k]
    votes: dict[str, float] = defaultdict(float)
    closest: dict[str, float] = {}
    for i in neighbours:
        if row[i] <= tolerance:
            votes[names[i]] += 1.0 / max(float(row[i]), 1e-6)
            closest.setdefault(names[i], float(row[i]))
    if not votes:
        distance = float(row[neighbours[0]])
        return Match(UNKNOWN, distance, confidence(distance, tolerance), None, BEYOND_TOLERANCE)
    winner = max(votes, key=votes.get)
    return Match(winner, closest[winner], confidence(closest[winner], tolerance), None, VOTE)
