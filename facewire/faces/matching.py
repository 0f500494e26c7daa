"""Name face encodings against a gallery: the nearest photo (default) or a vote of the k nearest.

A gallery given as an array is searched with one matrix operation over all of it; a FaceIndex
(facewire.faces.index) is asked for the 1 or k nearest photos only.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from facewire.faces.index import FaceIndex
from facewire.faces.settings import MatchSettings

UNKNOWN = "Unknown"


@dataclass(frozen=True)
class Match:
    """The gallery's verdict on one face: a name, its distance, and a confidence in [0, 1]."""

    name: str
    distance: float
    confidence: float


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

    nearest: the person of the nearest photo, if within `tolerance`.
    knn: the k nearest photos within `tolerance` vote, each weighted by 1/distance
    (k defaults to the square root of the number of photos, as in face_recognition's
    KNN example); no photo within the tolerance means UNKNOWN.
    """
    if len(encodings) == 0:
        return []
    if len(known) == 0:
        return [Match(UNKNOWN, float("nan"), 0.0) for _ in encodings]
    if isinstance(known, FaceIndex):
        return _match_index(encodings, known, settings)
    distances = distance_matrix(encodings, known)
    tolerance = settings.tolerance
    if settings.method == "knn":
        k = settings.k or max(1, round(math.sqrt(len(known))))
        return [_vote(row, names, tolerance, k) for row in distances]
    nearest = distances.argmin(axis=1)
    best = distances[np.arange(len(encodings)), nearest]
    return [_verdict(names[i], float(d), tolerance) for i, d in zip(nearest, best)]


def _match_index(encodings: np.ndarray, index: FaceIndex, settings: MatchSettings) -> list[Match]:
    """match_faces over an index: the nearest photo, or the vote of the k nearest (sorted, so `_vote` keeps them)."""
    k = settings.k or max(1, round(math.sqrt(len(index)))) if settings.method == "knn" else 1
    distances, ids = index.search(encodings, k)
    names = index.names_of(ids)
    if settings.method == "knn":
        return [_vote(row, row_names, settings.tolerance, k) for row, row_names in zip(distances, names)]
    return [_verdict(row_names[0], float(row[0]), settings.tolerance) for row, row_names in zip(distances, names)]


def _verdict(name: str, distance: float, tolerance: float) -> Match:
    return Match(name if distance <= tolerance else UNKNOWN, distance, confidence(distance, tolerance))


def _vote(row: np.ndarray, names: Sequence[str], tolerance: float, k: int) -> Match:
    neighbours = np.argsort(row)[:k]
    votes: dict[str, float] = defaultdict(float)
    closest: dict[str, float] = {}
    for i in neighbours:
        if row[i] <= tolerance:
            votes[names[i]] += 1.0 / max(float(row[i]), 1e-6)
            closest.setdefault(names[i], float(row[i]))
    if not votes:
        return _verdict(UNKNOWN, float(row[neighbours[0]]), tolerance)
    winner = max(votes, key=votes.get)
    return _verdict(winner, closest[winner], tolerance)
