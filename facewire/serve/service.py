"""Request handling: `Service.handle(frames) -> frames`, the one thing every transport calls.

It never raises: bad input becomes an error reply, an internal failure becomes
an "internal" error reply, so a REP socket always has something to send.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np

from facewire import __version__
from facewire.faces import draw, images
from facewire.faces.boxes import SAME_FACE_IOU, Detection, iou
from facewire.faces.detection import detect_faces, detect_faces_near
from facewire.faces.encoding import encode_faces
from facewire.faces.matching import UNKNOWN, Match, distance_matrix, match_faces
from facewire.faces.quality import Quality, face_quality
from facewire.faces.recognize import Face, find_faces
from facewire.faces.settings import Box, DetectorSettings, MatchSettings
from facewire.serve.track import Tracker, Vouch
from facewire.store.live import GalleryStore
from facewire.store.names import BadPhoto, EnrolError, NotFound, check_name
from facewire.wire import protocol
from facewire.wire.keys import ANONYMOUS, Sender
from facewire.wire.limits import Limits
from facewire.wire.protocol import FaceResult, Request

log = logging.getLogger(__name__)



Reply = list[Any]
"""The frames of a reply."""


@dataclass
class Service:
    """Recognition against the live gallery of a GalleryStore, and the ops that edit it.

    Each op is one method, found in OPS by its name; an op added to the protocol gets one entry there.
    Detection uses the store's settings, so that the gallery and the probes are read alike.
    """

    store: GalleryStore
    matching: MatchSettings = MatchSettings()
    limits: Limits = Limits()
    tracker: Tracker = field(default_factory=Tracker)
    read_only: bool = False

    def handle(self, frames: Sequence[protocol.Buffer], sender: Sender = ANONYMOUS) -> Reply:
        """Answer one request from `sender`; any failure is turned into an error reply."""
        try:
            request = protocol.parse_request(frames, self.limits)
        except protocol.ProtocolError as exc:
            log.warning("refused request: %s: %s", exc.code, exc.message)
            return protocol.pack_error(exc.code, exc.message, exc.request_id)
        if request.op in EDITS and (self.read_only or not sender.editor):
            why = "this server is read-only" if self.read_only else f"{sender.name}'s key is not an editor's"
            log.warning("refused %s from %s: %s", request.op, sender.name, why)
            return protocol.pack_error("forbidden", f"{request.op} refused: {why}", request.request_id)
        try:
            if request.op in EDITS:
                return OPS[request.op](self, request, sender.name)
            return OPS[request.op](self, request)
        except EnrolError as exc:
            log.warning("refused %s: %s", request.op, exc)
            return protocol.pack_error(exc.code, str(exc), request.request_id)
        except Exception:
            log.exception("request failed")
            return protocol.pack_error("internal", "the server failed on this request; see its log", request.request_id)

    def ping(self, request: Request) -> Reply:
        return self._reply(request, self._counts())

    def reload(self, request: Request, who: str) -> Reply:
        log.info("reload asked by %s", who)
        self.store.reload()
        return self._reply(request, self._counts())

    def list_people(self, request: Request) -> Reply:
        return self._reply(request, {"people": self.store.people()})

    def enroll(self, request: Request, who: str) -> Reply:
        name = request.options.name
        return self._reply(request, {"name": name, "photos": self.store.enrol(name, request.image, who)})

    def remove(self, request: Request, who: str) -> Reply:
        name = request.options.name
        return self._reply(request, {"name": name, "removed": self.store.remove(name, who)})

    def photo(self, request: Request) -> Reply:
        name = request.options.name
        return self._reply(request, {"name": name}, self.store.photo(name))

    def recognize(self, request: Request) -> Reply:
        """Detect, encode and name every face; reply with the faces and the annotated image."""
        options, clock = request.options, _Clock()
        settings = self.matching if options.tolerance is None else self.matching.with_tolerance(options.tolerance)
        tolerance = settings.tolerance
        vouched = verified(options.track, tolerance, self.tracker)
        if options.scan == "tracked" and (vouched or not options.track):  # between a video's keyframes
            found = detect_faces_near(request.image, [vouch.box for vouch in vouched], self.store.settings)
        else:
            found = detect_faces(request.image, self.store.settings)
        boxes = [detection.box for detection in found]
        qualities = [face_quality(request.image, detection) for detection in found]
        clock.lap("detect")
        known = tracked_matches(boxes, vouched)
        fresh = [box for box, vouch in zip(boxes, known) if vouch is None]
        encodings = (encode_faces(images.to_rgb(request.image), fresh, self.store.settings) if fresh
                     else np.empty((0, 128)))  # every face tracked: not even a colour conversion
        clock.lap("encode")
        new = iter(match_faces(encodings, self.store.current(), None, settings))
        matches = [next(new) if vouch is None else vouch.match(tolerance) for vouch in known]
        clock.lap("match")
        annotated = None
        if options.annotate:
            labels = [_label(box, match) for box, match in zip(boxes, matches)]
            annotated = draw.annotate(images.to_bgr(request.image), labels)
            clock.lap("draw")
        total_ms = clock.total_ms()
        h, w = request.image.shape[:2]
        seen = ", ".join(m.name for m in matches) or "no face"
        if request.camera is None:
            log.info("recognize %dx%d: %s in %.0f ms", w, h, seen, total_ms)
        else:
            log.info("camera %r, %dx%d: %s in %.0f ms", request.camera, w, h, seen, total_ms)
        if request.framing == "classic":
            return protocol.pack_classic(annotated)
        now = self.tracker.clock()  # a reused identity keeps the time it was encoded: tracking never renews it
        vouches = [Vouch.of(m, box, tolerance, now) if v is None else replace(v, box=box)
                   for box, m, v in zip(boxes, matches, known)]
        faces = [_result(detection, m, quality, v is not None, self.tracker.issue(vouch))
                 for detection, m, quality, v, vouch in zip(found, matches, qualities, known, vouches)]
        body = {"faces": [face.to_json() for face in faces], "timings_ms": clock.laps}
        if request.framing == "imagezmq":
            return protocol.pack_imagezmq(request.camera, body)
        return self._reply(request, body, annotated)

    def verify(self, request: Request) -> Reply:
        """Whether two images show the same person, or an image shows the gallery's person `name`: the distance
        between the two faces (or from the face to that person's nearest photo) against the tolerance."""
        options = request.options
        tolerance = self.matching.tolerance if options.tolerance is None else options.tolerance
        named = {} if options.name is None else {"name": check_name(options.name)}
        photos = self._encodings_of(named["name"]) if named else None  # an unknown name is refused before detection
        probes = [request.image] if named else [request.image, request.image2]
        faces = [one_face(image, number, self.store.settings) for number, image in enumerate(probes, 1)]
        known = faces[1].encoding[None] if photos is None else photos
        distance = float(distance_matrix(faces[0].encoding[None], known).min())
        decision = "same" if distance <= tolerance else "different"
        log.info("verify %s: %s at %.4f (tolerance %g)", named.get("name", "two images"), decision, distance,
                 tolerance)
        return self._reply(request, {**named, "same": decision == "same", "distance": _rounded(distance),
                                     "threshold": tolerance, "decision": decision,
                                     "faces": [list(face.box) for face in faces]})

    def _encodings_of(self, name: str) -> np.ndarray:
        """The encodings of `name`'s photos in the live gallery; NotFound when it has none."""
        known = self.store.current().vectors_of(name)
        if not len(known):
            raise NotFound(f"no person called {name}")
        return known

    def _reply(self, request: Request, body: dict[str, Any], image: np.ndarray | None = None) -> Reply:
        """A success reply: the op's name, the request's id if it had one, then the op's own fields."""
        head = {"op": request.op} if request.request_id is None else {"op": request.op, "id": request.request_id}
        return protocol.pack_reply({**head, **body}, image, request.encoding)

    def _counts(self) -> dict[str, Any]:
        people, photos = self.store.counts()
        return {"version": __version__, "people": people, "photos": photos, "detector": self.store.settings.detector}


OPS: dict[str, Callable[..., Reply]] = {
    "recognize": Service.recognize, "enroll": Service.enroll, "remove": Service.remove,
    "list": Service.list_people, "reload": Service.reload, "ping": Service.ping, "photo": Service.photo,
    "verify": Service.verify,
}
"""The service's op table: one method per op of the protocol."""
EDITS = ("enroll", "remove", "reload")
"""Ops that change the gallery: refused with --read-only, and with --keys to keys not in editors/;
their methods are told who asked."""


def verified(tokens: Sequence[str], tolerance: float, tracker: Tracker) -> list[Vouch]:
    """What the client's track tokens prove: only tokens of this server that verify, have not
    expired and were issued under the same tolerance count. Nothing else from the client is trusted."""
    return [v for v in map(tracker.verify, tokens) if v is not None and v.tolerance == tolerance]


def tracked_matches(boxes: list[Box], vouched: Sequence[Vouch]) -> list[Vouch | None]:
    """For each box, the vouch of the face it overlaps (IoU >= SAME_FACE_IOU), if any.

    A tracked face keeps its name without being encoded again: the saving that keeps video real-time.
    """
    found: list[Vouch | None] = []
    for box in boxes:
        best = max(vouched, key=lambda vouch: iou(box, vouch.box), default=None)
        found.append(best if best is not None and iou(box, best.box) >= SAME_FACE_IOU else None)
    return found


def one_face(image: np.ndarray, number: int, settings: DetectorSettings) -> Face:
    """The one face of verify's image `number`, found and encoded; BadPhoto naming the image if it has none or more."""
    faces = find_faces(image, settings)
    if len(faces) != 1:
        raise BadPhoto(f"image {number} must show exactly one face; it shows {len(faces)}")
    return faces[0]


def _label(box: tuple[int, int, int, int], match: Match) -> draw.Label:
    known = match.name != UNKNOWN
    return draw.Label(box, f"{match.name} {match.distance:.2f}" if known else UNKNOWN, known)


def _result(detection: Detection, match: Match, quality: Quality, tracked: bool, track: str) -> FaceResult:
    landmarks = tuple((round(x, 1), round(y, 1)) for x, y in detection.landmarks)
    margin = None if match.margin is None else round(match.margin, 4)
    return FaceResult(match.name, _rounded(match.distance), round(match.confidence, 3), detection.box, tracked,
                      track, round(detection.score, 4), landmarks, margin, match.decision, quality.to_json())


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
