"""Video files and cameras through the server, kept real-time.

Several frames are in flight at once (so every worker is busy); when the server falls
behind a file's own frame rate, stale frames are skipped rather than queued; and each
request carries the track tokens of the last answered frame's faces, so the server looks
for faces only around them and reuses the identity of a face it can track instead of
encoding it again (after a frame with no face, it looks nowhere). Every KEYFRAME-th frame
carries none: the whole frame is scanned and every face encoded afresh, so a face that came
in meanwhile is found then (within half a second at 30 fps). The tokens are
signed by the server: a client cannot make up a name or a place to look.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from typing import Iterator

import cv2
import numpy as np

from facewire.client.client import Client, Result
from facewire.client.pipeline import FramesFor
from facewire.wire import protocol

KEYFRAME = 15
"""Every KEYFRAME-th frame is scanned whole (half a second at 30 fps)..."""
SEARCH_KEYFRAME = 5
"""...and every SEARCH_KEYFRAME-th while no face is tracked, so that one coming in is found sooner."""


class FrameSource:
    """Frames from a cv2.VideoCapture; with `realtime`, paced by the clock at the source's own rate:
    a frame is not read before it is due, and frames already past due are skipped."""

    def __init__(self, capture: cv2.VideoCapture, realtime: bool):
        self.capture, self.realtime = capture, realtime
        self.fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
        self.position = 0
        self.skipped = 0
        self.started = time.monotonic()

    def next(self) -> np.ndarray | None:
        if self.realtime:
            wait = self.started + self.position / self.fps - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # ahead of the video: play it at its own speed
            due = int((time.monotonic() - self.started) * self.fps)
            while self.position < due and self.capture.grab():  # stale: drop without decoding
                self.position += 1
                self.skipped += 1
        ok, frame = self.capture.read()
        self.position += ok
        return frame if ok else None


class Meter:
    """Frames per second over the last second."""

    def __init__(self) -> None:
        self.times: deque[float] = deque()

    def tick(self) -> float:
        now = time.monotonic()
        self.times.append(now)
        while now - self.times[0] > 1.0:
            self.times.popleft()
        return len(self.times) / max(now - self.times[0], 1e-3) if len(self.times) > 1 else 0.0


def stream(client: Client, source: FrameSource, in_flight: int = 4, annotate: bool = True) -> Iterator[Result]:
    """Results for the source's frames, in order, as fast as the server answers them; raises the first error.

    Every KEYFRAME-th frame, and those sent before any result came back, ask for a whole scan.
    The others ask for a tracked scan with the track tokens of the faces last seen: those of
    the last result given out, or when a tracked scan lost every face, those before it (a
    face missed in one frame is looked for again; with no token at all, the last whole scan
    found no face, and the server looks nowhere). A frame is sent at most `in_flight` frames
    after the last result given out, so its tokens are never older than that."""
    track: list[str] | None = None
    whole: set[int] = set()

    def requests() -> Iterator[FramesFor]:
        for index in itertools.count():
            frame = source.next()
            if frame is None:
                return
            if track is None or index % (KEYFRAME if track else SEARCH_KEYFRAME) == 0:
                whole.add(index)
                yield client.recognize_request(frame, annotate=annotate, track=[], scan="full")
            else:
                yield client.recognize_request(frame, annotate=annotate, track=track, scan="tracked")

    for index, outcome in enumerate(client.in_order(requests(), in_flight, window=in_flight)):
        if isinstance(outcome, Exception):
            raise outcome
        seen = [face.track for face in outcome.faces if face.track][:protocol.MAX_TRACKED]
        if seen or index in whole or track is None:
            track = seen
        whole.discard(index)
        yield outcome


def overlay_fps(image: np.ndarray, fps: float) -> np.ndarray:
    text = f"{fps:.1f} fps"
    cv2.putText(image, text, (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 0), 4, cv2.LINE_AA)
    cv2.putText(image, text, (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2, cv2.LINE_AA)
    return image
