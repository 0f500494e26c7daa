"""Whether a face is someone: the verdict on one face from its nearest person and the next one.

A face comes with its nearest person (that person's nearest photo) and the distance to the nearest
*other* person. The rule is MatchSettings.decision:

- "nearest": the nearest person, if within `tolerance`.
- "margin": the same, and also the nearest person up to `ceiling` when every other person is at least
  `margin` further away (with fewer than two people, the tolerance alone).

Each verdict says which rule named or refused the face, as its `decision`:

    "within tolerance"  named: the nearest person is within the tolerance
    "margin"            named: beyond the tolerance, within the ceiling, the next person `margin` further
    "ambiguous"         Unknown: beyond the tolerance, within the ceiling, the next person too near
    "beyond ceiling"    Unknown: beyond the ceiling (the margin rule)
    "beyond tolerance"  Unknown: beyond the tolerance (the nearest rule; the margin rule with one person)
    "empty gallery"     Unknown: nobody to compare with
    "vote"              named by a vote of the k nearest photos (--match knn)
    "tracked"           the name (or Unknown) a track token vouches for, not decided again

How often a stranger is named: an enrolled person's distance to a stranger's face is modelled as a
normal distribution fitted to the lower tail of measured impostor distances (ImpostorModel). With N
people, independent, the nearest rule names a stranger with P = 1 - (1 - p(tolerance))^N; the margin
rule adds the chance that the nearest is between tolerance and ceiling with every other person at
least `margin` further (`false_name_rate`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Sequence

import numpy as np

from facewire.faces.settings import MatchSettings

UNKNOWN = "Unknown"

WITHIN_TOLERANCE = "within tolerance"
BY_MARGIN = "margin"
AMBIGUOUS = "ambiguous"
BEYOND_CEILING = "beyond ceiling"
BEYOND_TOLERANCE = "beyond tolerance"
EMPTY_GALLERY = "empty gallery"
VOTE = "vote"
TRACKED = "tracked"

IMPOSTOR_MEAN = 0.7987
IMPOSTOR_SD = 0.0629
"""The built-in impostor model (see ImpostorModel), measured by `python bench/bench_decision.py` (MTCNN):
832 distances from 173 stranger faces (the shared strangers, the detection set's group photos, the clip's
Lin-Manuel Miranda and audience, the shared gallery crosswise) to each person of their gallery."""

TAIL = 0.5
"""ImpostorModel.fit fits the normal to the distances below this quantile: the tail that names strangers."""

GALLERY_SIZES = (1_000, 10_000, 100_000)
"""The gallery sizes a projection is shown for, beside the gallery's own."""


@dataclass(frozen=True)
class Nearest:
    """A face's nearest person and its distance, and the distance to the nearest other person (None: none)."""

    name: str
    distance: float
    other: float | None = None

    @property
    def margin(self) -> float | None:
        """How much nearer the nearest person is than the next one (None with fewer than two people)."""
        return None if self.other is None else self.other - self.distance


@dataclass(frozen=True)
class Verdict:
    """A face's name (or UNKNOWN), its distance to the nearest person, the margin, and the rule that decided."""

    name: str
    distance: float
    margin: float | None
    decision: str


def decide(nearest: Nearest | None, settings: MatchSettings) -> Verdict:
    """The verdict of `settings.decision` on a face whose nearest people are `nearest` (None: empty gallery)."""
    if nearest is None:
        return Verdict(UNKNOWN, math.nan, None, EMPTY_GALLERY)
    margin = nearest.margin
    if nearest.distance <= settings.tolerance:
        return Verdict(nearest.name, nearest.distance, margin, WITHIN_TOLERANCE)
    if settings.decision == "nearest" or margin is None:
        return Verdict(UNKNOWN, nearest.distance, margin, BEYOND_TOLERANCE)
    if nearest.distance > settings.ceiling:
        return Verdict(UNKNOWN, nearest.distance, margin, BEYOND_CEILING)
    if margin >= settings.margin:
        return Verdict(nearest.name, nearest.distance, margin, BY_MARGIN)
    return Verdict(UNKNOWN, nearest.distance, margin, AMBIGUOUS)


@dataclass(frozen=True)
class ImpostorModel:
    """The distance from a stranger's face to one enrolled person (that person's nearest photo): a normal
    distribution, fitted to the lower tail of measured distances, where names are given."""

    mean: float
    sd: float

    @classmethod
    def fit(cls, distances: Sequence[float] | np.ndarray) -> ImpostorModel:
        """The normal whose quantiles best match (least squares) the measured ones below the TAIL quantile."""
        ordered = np.sort(np.asarray(distances, float))
        levels = (np.arange(len(ordered)) + 0.5) / len(ordered)
        tail = levels <= TAIL
        if tail.sum() < 2:
            raise ValueError(f"need at least {math.ceil(2 / TAIL)} impostor distances to fit, got {len(ordered)}")
        z = np.array([NormalDist().inv_cdf(level) for level in levels[tail]])
        sd, mean = np.polyfit(z, ordered[tail], 1)
        return cls(float(mean), float(sd))

    def p(self, threshold: float) -> float:
        """The chance that one enrolled person is within `threshold` of a stranger's face."""
        return NormalDist(self.mean, self.sd).cdf(threshold)


IMPOSTOR_MODEL = ImpostorModel(IMPOSTOR_MEAN, IMPOSTOR_SD)


def false_name_rate(settings: MatchSettings, people: int, model: ImpostorModel = IMPOSTOR_MODEL) -> float:
    """The projected chance that a stranger's face gets a name in a gallery of `people` people, each
    independently at an impostor distance (nearest photo per person: --match nearest)."""
    if people < 1:
        return 0.0
    within = -math.expm1(people * math.log1p(-model.p(settings.tolerance)))
    if settings.decision == "nearest" or people < 2 or settings.ceiling <= settings.tolerance:
        return within
    return min(1.0, within + _named_by_margin(settings, people, model))


def _named_by_margin(settings: MatchSettings, people: int, model: ImpostorModel, steps: int = 400) -> float:
    """The chance that the nearest of `people` impostor distances lies beyond the tolerance and within the
    ceiling with the next one at least `margin` further: the integral over x of
    people * f(x) * (1 - F(x + margin))^(people - 1)."""
    normal = NormalDist(model.mean, model.sd)
    x = np.linspace(settings.tolerance, settings.ceiling, steps + 1)
    further = np.array([1.0 - normal.cdf(v + settings.margin) for v in x])
    density = np.array([normal.pdf(v) for v in x])
    y = people * density * np.exp((people - 1) * np.log(np.maximum(further, 1e-300)))
    return float(np.trapezoid(y, x))


def recommended(settings: MatchSettings, people: int, rate: float,
                model: ImpostorModel = IMPOSTOR_MODEL) -> MatchSettings:
    """`settings` with the largest tolerance (the ceiling moved with it, to 1e-4) whose projected false-name
    rate in a gallery of `people` stays at or under `rate`."""
    low, high = 0.0, 2.0
    while high - low > 1e-5:
        middle = (low + high) / 2
        if false_name_rate(settings.with_tolerance(middle), people, model) <= rate:
            low = middle
        else:
            high = middle
    return settings.with_tolerance(math.floor(low * 1e4) / 1e4)


def projection_lines(settings: MatchSettings, people: int, model: ImpostorModel = IMPOSTOR_MODEL) -> list[str]:
    """What the server says at start: the rule, then a line per gallery size (its own, then GALLERY_SIZES)."""
    lines = [f"false names projected for {describe(settings)}, enrolled people at impostor distances "
             f"~ N({model.mean:.4f}, {model.sd:.4f}):"]
    for size in dict.fromkeys((people, *GALLERY_SIZES)):
        lines.append(f"  {percent(false_name_rate(settings, size, model))} of strangers get a name with {size} people"
                     f"{' (this gallery)' if size == people else ''}")
    return lines


def describe(settings: MatchSettings) -> str:
    """The rule in words."""
    if settings.decision == "nearest":
        return f"nearest within {settings.tolerance:g}"
    return (f"margin: within {settings.tolerance:g}, or within {settings.ceiling:g} when the next person is "
            f"{settings.margin:g} further")


def percent(rate: float) -> str:
    """A rate as a percentage: two decimals, or three significant digits under 1%."""
    return f"{100 * rate:.2f}%" if rate >= 0.01 else f"{100 * rate:.3g}%"
