"""Request handling: `Service.handle(frames) -> frames`, the one thing every transport calls.

It never raises: bad input becomes an error reply, an internal failure becomes
an "internal" error reply, so a REP socket always has something to send.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from . import __version__, draw, images, protocol
from .store import EnrolError, GalleryStore
from .matching import UNKNOWN, Match, match_faces
from .recognize import Box, DetectorSettings, detect_faces, encode_faces, iou
from .track import Tracker, Vouch

log = logging.getLogger(__name__)

TRACK_IOU = 0.5


@dataclass
class Service:
    """Recognition against the live gallery of a GalleryStore, and the ops that edit it."""

    store: GalleryStore
    settings: DetectorSettings = DetectorSettings()
    tolerance: float = 0.6
    limits: protocol.Limits = protocol.Limits()
    match: str = "nearest"
    k: int | None = None
    tracker: Tracker = field(default_factory=Tracker)

    def handle(self, frames: Sequence[protocol.Buffer]) -> list[bytes]:
        """Answer one request; any failure is turned into an error reply."""
        try:
            request = protocol.parse_request(frames, self.limits)
        except protocol.ProtocolError as exc:
            log.warning("refused request: %s: %s", exc.code, exc.message)
            return protocol.pack_error(exc.code, exc.message, exc.request_id)
        try:
            if request.op == "recognize":
                return self.recognize(request)
            return protocol.pack_reply(self._with_id({"op": request.op, **self.gallery_op(request)}, request))
        except EnrolError as exc:
            log.warning("refused %s: %s", request.op, exc)
            return protocol.pack_error(exc.code, str(exc), request.request_id)
        except Exception:
            log.exception("request failed")
            return protocol.pack_error("internal", "the server failed on this request; see its log", request.request_id)

    def gallery_op(self, request: protocol.Request) -> dict[str, Any]:
        """ping, list, reload, enroll and remove: the reply body of each."""
        if request.op == "enroll":
            return {"name": request.options["name"], "photos": self.store.enrol(request.options["name"], request.image)}
        if request.op == "remove":
            return {"name": request.options["name"], "removed": self.store.remove(request.options["name"])}
        if request.op == "list":
            return {"people": self.store.people()}
        gallery = self.store.reload() if request.op == "reload" else self.store.current()
        return {"version": __version__, "people": len(gallery.people), "photos": len(gallery.names)}

    def recognize(self, request: protocol.Request) -> list[bytes]:
        """Detect, encode and name every face; reply with the faces and the annotated image."""
        clock = _Clock()
        boxes = detect_faces(request.image, self.settings)
        clock.lap("detect")
        tolerance = request.options.get("tolerance", self.tolerance)
        known = tracked_matches(boxes, request.options.get("track", []), tolerance, self.tracker)
        fresh = [box for box, vouch in zip(boxes, known) if vouch is None]
        encodings = encode_faces(images.to_rgb(request.image), fresh) if fresh else np.empty((0, 128))
        clock.lap("encode")
        gallery = self.store.current()
        new = iter(match_faces(encodings, gallery.encodings, gallery.names, tolerance, self.match, self.k))
        matches = [next(new) if vouch is None else vouch.match(tolerance) for vouch in known]
        clock.lap("match")
        annotated = None
        if request.options.get("annotate", True):
            labels = [_label(box, match) for box, match in zip(boxes, matches)]
            annotated = draw.annotate(images.to_bgr(request.image), labels)
            clock.lap("draw")
        total_ms = clock.total_ms()
        h, w = request.image.shape[:2]
        log.info("recognize %dx%d: %s in %.0f ms", w, h, ", ".join(m.name for m in matches) or "no face", total_ms)
        if request.classic:
            return protocol.pack_classic(annotated)
        now = self.tracker.clock()  # a reused identity keeps the time it was encoded: tracking never renews it
        vouches = [Vouch.of(m, box, tolerance, now) if v is None else replace(v, box=box)
                   for box, m, v in zip(boxes, matches, known)]
        faces = [
            {"name": m.name, "distance": _rounded(m.distance), "confidence": round(m.confidence, 3), "box": list(box),
             "tracked": v is not None, "track": self.tracker.issue(vouch)}
            for box, m, v, vouch in zip(boxes, matches, known, vouches)
        ]
        body = {"op": "recognize", "faces": faces, "timings_ms": clock.laps}
        return protocol.pack_reply(self._with_id(body, request), annotated, request.encoding)

    @staticmethod
    def _with_id(body: dict[str, Any], request: protocol.Request) -> dict[str, Any]:
        return body if request.request_id is None else {**body, "id": request.request_id}


def tracked_matches(boxes: list[Box], tokens: list[str], tolerance: float, tracker: Tracker) -> list[Vouch | None]:
    """For each box, what a token of this server proves about the face it overlaps (IoU >= 0.5), if any.

    A tracked face keeps its name without being encoded again: the saving that keeps video real-time.
    Only tokens that verify, have not expired and were issued under the same tolerance count: the
    rest are ignored, and their faces encoded afresh. Nothing else from the client is trusted.
    """
    vouched = [v for v in map(tracker.verify, tokens) if v is not None and v.tolerance == tolerance]
    found: list[Vouch | None] = []
    for box in boxes:
        best = max(vouched, key=lambda vouch: iou(box, vouch.box), default=None)
        found.append(best if best is not None and iou(box, best.box) >= TRACK_IOU else None)
    return found


def _label(box: tuple[int, int, int, int], match: Match) -> draw.Label:
    known = match.name != UNKNOWN
    return draw.Label(box, f"{match.name} {match.distance:.2f}" if known else UNKNOWN, known)


def _rounded(distance: float) -> float | None:
    return None if np.isnan(distance) else round(distance, 4)


class _Clock:
    """Named laps in milliseconds."""

    def __init__(self) -> None:
        self.started = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round((now - self.last) * 1000, 2)
        self.last = now

    def total_ms(self) -> float:
        """Record and return the time since the clock started."""
        self.laps["total"] = round((time.perf_counter() - self.started) * 1000, 2)
        return self.laps["total"]
