"""Video: the shared clip through the real server, with its two portraits as the gallery."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq

from facewire.client import video
from facewire.client.client import Client, ServerError, ServerUnavailable
from facewire.client.video import KEYFRAME, SEARCH_KEYFRAME, FrameSource, Meter, overlay_fps, stream
from facewire.process import ServerProcess
from facewire.serve.service import tracked_matches, verified
from facewire.serve.track import Tracker, Vouch
from facewire.wire import protocol
from facewire.wire.keys import ClientKeys, ServerKeys

from .conftest import run_client
from .peers import Peer, deadline, marked, recognized, wait_until


@pytest.fixture(scope="module")
def video_server(shared_faces, tmp_path_factory):
    folder = tmp_path_factory.mktemp("video")
    with ServerProcess(shared_faces / "video", folder / "server.log", "--db", f"sqlite:///{folder / 'cache.db'}") as server:
        yield server


def test_the_clip_is_recognised_written_and_tracked(video_server, shared_faces, tmp_path):
    clip = shared_faces / "video" / "short_hamilton_clip.mp4"
    output = tmp_path / "out.mp4"
    done = run_client("--server", video_server.address, "--video", str(clip), "--no-show", "--json",
                      "--output", str(output))
    assert done.returncode == 0, done.stderr
    frames = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(frames) == 275  # a file written with --no-show gets every frame
    named = sum(any(f["name"] == "lin-manuel-miranda" for f in frame["faces"]) for frame in frames)
    assert named > 100
    assert any(f["tracked"] for frame in frames for f in frame["faces"])  # identities reused, not re-encoded
    written = cv2.VideoCapture(str(output))
    assert written.get(cv2.CAP_PROP_FRAME_COUNT) == 275
    assert (written.get(cv2.CAP_PROP_FRAME_WIDTH), written.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (640, 360)
    assert "fps" in done.stderr and "lin-manuel-miranda" in done.stderr


def test_live_playback_keeps_pace_by_skipping_stale_frames(video_server, shared_faces):
    clip = shared_faces / "video" / "short_hamilton_clip.mp4"
    done = run_client("--server", video_server.address, "--video", str(clip), "--no-show")
    assert done.returncode == 0, done.stderr
    answered = int(done.stderr.split("video: ")[1].split(" frames")[0])
    skipped = int(done.stderr.split("answered, ")[1].split(" skipped")[0])
    assert answered + skipped == 275


def test_a_camera_that_is_not_there_is_a_clear_error():
    done = run_client("--server", "tcp://127.0.0.1:1", "--camera", "7", "--no-show", "--timeout", "1")
    assert done.returncode == 1 and "cannot open camera 7" in done.stderr


def test_tracking_reuses_an_identity_only_for_an_overlapping_box_and_a_genuine_token():
    tracker = Tracker()
    ann = tracker.issue(Vouch("ann", 0.3, (10, 60, 60, 10), 0.6, time.time()))
    mallory = Tracker().issue(Vouch("mallory", 0.1, (100, 160, 160, 100), 0.6, time.time()))
    same, moved_far, forged = (12, 62, 62, 12), (200, 260, 260, 200), (101, 161, 161, 101)
    [kept, fresh, refused] = tracked_matches([same, moved_far, forged], verified([ann, mallory], 0.6, tracker))
    assert kept.name == "ann" and kept.distance == 0.3 and fresh is None and refused is None
    assert tracked_matches([same], verified([ann], 0.5, tracker)) == [None]  # named under another tolerance


# --- in process: stream() against a peer that answers out of order ---------------------------------

class Frames:
    """A source of marked frames; `consumed` is how many results the test had taken when each was read."""

    def __init__(self, count: int, results: list):
        self.left, self.results, self.sent_after = list(range(count)), results, []

    def next(self):
        if not self.left:
            return None
        self.sent_after.append(len(self.results))
        return marked(self.left.pop(0))


def run_stream(peer: Peer, count: int, **options) -> tuple[list, Frames]:
    results: list = []
    source = Frames(count, results)
    with Client(peer.address, timeout=5) as client, deadline():
        for result in stream(client, source, **options):
            results.append(result)
    return results, source


def test_stream_yields_every_frame_in_order_whatever_order_the_answers_come_in():
    with Peer(batch=4, hold=0.2) as peer:
        results, _ = run_stream(peer, 10)
    assert [r.names for r in results] == [[f"frame{n}"] for n in range(10)]
    assert sorted(r.marker for r in peer.received) == list(range(10))
    assert peer.max_outstanding == 4  # four frames in flight by default
    assert all(r.header["annotate"] is True for r in peer.received)


def test_stream_keeps_no_more_frames_in_flight_than_asked():
    with Peer(hold=0.5) as peer:
        results, _ = run_stream(peer, 5, in_flight=2, annotate=False)
    assert [r.names for r in results] == [[f"frame{n}"] for n in range(5)]
    assert peer.max_outstanding == 2
    assert all(r.header["annotate"] is False for r in peer.received)


def test_each_frame_carries_the_track_tokens_of_the_last_frame_shown_except_keyframes():
    with Peer(batch=4, hold=0.2) as peer:
        results, source = run_stream(peer, 2 * KEYFRAME + 3)
    assert len(results) == 2 * KEYFRAME + 3
    hints = {r.marker: r.header["track"] for r in peer.received}
    for frame, shown in enumerate(source.sent_after):
        expected = [] if frame % KEYFRAME == 0 or shown == 0 else [f"token{shown - 1}"]
        assert hints[frame] == expected, frame
    assert any(hints[frame] for frame in range(1, KEYFRAME))  # tokens were sent back
    scans = {r.marker: r.header["scan"] for r in peer.received}
    for frame, shown in enumerate(source.sent_after):  # full at keyframes and before any answer
        assert scans[frame] == ("full" if frame % KEYFRAME == 0 or shown == 0 else "tracked"), frame
        assert shown >= frame - 3  # sent at most in_flight (4) frames after the last result shown


def scan_answers(faces_on: set[str]):
    """A peer's answer: one face with a token on the scans named in `faces_on`, none on the others."""
    def answer(request):
        return recognized(request) if request.header.get("scan") in faces_on else protocol.pack_reply(
            {"op": "recognize", "id": request.id, "faces": [], "timings_ms": {"total": 1.0}})
    return answer


def test_a_tracked_scan_that_loses_every_face_leaves_the_last_tokens_in_use():
    with Peer(answer=scan_answers({"full"}), hold=0.05) as peer:
        results, source = run_stream(peer, KEYFRAME + 3, in_flight=1)
    hints = {r.marker: (r.header["scan"], r.header["track"]) for r in peer.received}
    assert hints[0] == ("full", [])
    assert all(hints[frame] == ("tracked", ["token0"]) for frame in range(1, KEYFRAME)), hints
    assert hints[KEYFRAME] == ("full", []) and hints[KEYFRAME + 1] == ("tracked", [f"token{KEYFRAME}"])


def test_with_no_face_found_frames_look_nowhere_and_a_whole_scan_comes_more_often():
    with Peer(answer=scan_answers(set()), hold=0.05) as peer:
        run_stream(peer, 2 * KEYFRAME, in_flight=1)
    hints = {r.marker: (r.header["scan"], r.header["track"]) for r in peer.received}
    assert len(hints) == 2 * KEYFRAME
    for frame, hint in hints.items():
        assert hint == ("full", []) if frame % SEARCH_KEYFRAME == 0 else ("tracked", []), frame


def many_faces(request) -> list[bytes]:
    """40 faces, the first without a track token: the hint keeps at most MAX_TRACKED real tokens."""
    faces = [{"name": "x", "distance": None, "confidence": 0.0, "box": [0, 1, 1, 0], "track": None}]
    faces += [{"name": f"p{i}", "distance": 0.3, "confidence": 0.75, "box": [0, 1, 1, 0], "track": f"t{request.marker}.{i}"} for i in range(40)]
    return protocol.pack_reply({"op": "recognize", "id": request.id, "faces": faces})


def test_the_track_hint_holds_at_most_max_tracked_tokens():
    with Peer(answer=many_faces, hold=0) as peer:
        results, source = run_stream(peer, 3, in_flight=1)
    hints = {r.marker: r.header["track"] for r in peer.received}
    assert hints[0] == [] and hints[1] == [f"t0.{i}" for i in range(protocol.MAX_TRACKED)]
    assert hints[2] == [f"t1.{i}" for i in range(protocol.MAX_TRACKED)]


def refuse_frame_2(request) -> list[bytes]:
    if request.marker == 2:
        return protocol.pack_error("bad_image", "frame 2 is broken", request.id)
    return recognized(request)


def test_a_refused_frame_stops_the_stream_after_the_frames_before_it():
    with Peer(answer=refuse_frame_2, batch=4, hold=0.2) as peer:
        results: list = []
        with Client(peer.address, timeout=5) as client, deadline(), pytest.raises(ServerError) as refused:
            for result in stream(client, Frames(6, results)):
                results.append(result)
    assert [r.names for r in results] == [["frame0"], ["frame1"]]
    assert refused.value.code == "bad_image"


def test_stray_and_duplicate_answers_do_not_disturb_the_stream():
    with Peer(batch=3, hold=0.2, duplicates=True, noise=True) as peer:
        results, _ = run_stream(peer, 7, in_flight=3)
    assert [r.names for r in results] == [[f"frame{n}"] for n in range(7)]


def test_an_empty_source_yields_nothing():
    with Peer() as peer:
        results, _ = run_stream(peer, 0)
    assert results == [] and peer.received == []


# --- in process: the frame source and the meter, on a fake clock ------------------------------------

class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class FakeCapture:
    """A video of `count` marked frames at `fps`."""

    def __init__(self, count: int, fps: float):
        self.count, self.fps, self.position = count, fps, 0

    def get(self, prop):
        assert prop == cv2.CAP_PROP_FPS
        return self.fps

    def grab(self) -> bool:
        self.position += 1
        return self.position <= self.count

    def read(self):
        if self.position >= self.count:
            return False, None
        self.position += 1
        return True, marked(self.position - 1)


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(video, "time", fake)
    return fake


def frames_of(source: FrameSource) -> list[int]:
    out = []
    while (frame := source.next()) is not None:
        out.append(int(frame.flat[0]))
    return out


def test_a_file_source_gives_every_frame_without_waiting(clock):
    source = FrameSource(FakeCapture(5, 25.0), realtime=False)
    assert frames_of(source) == [0, 1, 2, 3, 4]
    assert source.position == 5 and source.skipped == 0 and clock.slept == []
    assert source.next() is None and source.position == 5


def test_live_playback_waits_when_ahead_and_skips_stale_frames(clock):
    source = FrameSource(FakeCapture(20, 10.0), realtime=True)
    assert source.fps == 10.0
    assert int(source.next().flat[0]) == 0 and clock.slept == []  # frame 0 is due at once
    assert int(source.next().flat[0]) == 1  # ahead of the video: waits until frame 1 is due
    assert clock.slept == [pytest.approx(0.1)] and clock.now == pytest.approx(100.1)
    clock.now += 0.35  # the server was slow: frames 2 and 3 are past due at t = 0.45 s
    assert int(source.next().flat[0]) == 4
    assert source.skipped == 2 and source.position == 5
    clock.now = 100.0 + 0.5  # exactly when frame 5 is due: no wait, no skip
    assert int(source.next().flat[0]) == 5 and len(clock.slept) == 1 and source.skipped == 2


def test_live_playback_skipping_stops_at_the_end_of_the_file(clock):
    source = FrameSource(FakeCapture(3, 10.0), realtime=True)
    clock.now += 10.0  # far behind: everything is stale
    assert source.next() is None
    assert source.skipped == 3 and source.position == 3


def test_a_source_without_a_frame_rate_plays_at_30_fps(clock):
    source = FrameSource(FakeCapture(3, 0.0), realtime=True)
    assert source.fps == 30.0
    source.next()
    source.next()
    assert clock.slept == [pytest.approx(1 / 30)]


def test_the_meter_counts_the_ticks_of_the_last_second_over_their_span(clock):
    meter = Meter()
    assert meter.tick() == 0.0  # one tick: no rate yet
    clock.now += 0.25
    assert meter.tick() == pytest.approx(2 / 0.25)
    for _ in range(20):
        clock.now += 0.25
        rate = meter.tick()
    assert len(meter.times) == 5 and rate == pytest.approx(5 / 1.0)  # ticks older than a second are forgotten
    clock.now += 1.0  # exactly a second after the last tick, which still counts
    assert meter.tick() == pytest.approx(2 / 1.0)
    clock.now += 1.5
    assert meter.tick() == 0.0  # alone in the last second


def test_the_meter_never_divides_by_zero(clock):
    meter = Meter()
    meter.tick()
    assert meter.tick() == pytest.approx(2 / 1e-3)  # two ticks at the same instant


def test_the_fps_overlay_writes_the_rate_in_white_on_black_in_the_top_left_corner():
    image = np.full((120, 200, 3), 128, np.uint8)
    out = overlay_fps(image, 12.34)
    assert out is image
    changed = np.argwhere((image != 128).any(axis=2))
    # "12.3 fps" from x = 10 with its baseline at y = 28 (opencv-python 5.0): rows 10-32, columns 11-102
    assert (changed.min(axis=0).tolist(), changed.max(axis=0).tolist()) == ([10, 11], [32, 102])
    assert ((image == 255).all(axis=2)).sum() > 350  # white text, strokes about 2 px wide
    other = overlay_fps(np.full((120, 200, 3), 128, np.uint8), 12.3)
    assert np.array_equal(other, image)  # one decimal place
    assert not np.array_equal(overlay_fps(np.full((120, 200, 3), 128, np.uint8), 12.4), image)



def test_on_a_white_picture_the_rate_still_shows_edged_in_grey_by_its_black_outline():
    image = overlay_fps(np.full((120, 200, 3), 255, np.uint8), 12.34)
    edged = (image != 255).any(axis=2)
    assert edged.sum() > 400  # white text alone would not show at all
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()  # black on white: grey
    marks = np.argwhere(edged)
    assert (marks.min(axis=0).tolist(), marks.max(axis=0).tolist()) == ([10, 11], [32, 102])  # under the text

def test_stream_keeps_four_frames_in_flight_by_default_and_sends_them_as_the_client_would():
    with Peer(hold=0.5) as peer:
        results: list = []
        with Client(peer.address, timeout=5, wire="png") as client, deadline():
            results = list(stream(client, Frames(6, results)))
    assert [r.names for r in results] == [[f"frame{n}"] for n in range(6)]
    assert peer.max_outstanding == 4
    assert all(r.header["encoding"] == "png" for r in peer.received)


class Hiccup(Frames):
    """A source that has nothing once (the end, as far as stream knows), then would have more."""

    def __init__(self, results: list):
        super().__init__(2, results)
        self.resumed = False

    def next(self):
        frame = super().next()
        if frame is None and not self.resumed:
            self.resumed, self.left = True, [9]
        return frame


def test_the_stream_ends_at_the_first_missing_frame():
    with Peer() as peer:
        results: list = []
        with Client(peer.address, timeout=5) as client, deadline():
            results = list(stream(client, Hiccup(results)))
    assert [r.names for r in results] == [["frame0"], ["frame1"]]
    assert sorted(r.marker for r in peer.received) == [0, 1]


def test_a_stream_to_a_server_that_never_answers_raises_server_unavailable():
    never = lambda request, attempt: True  # noqa: E731
    with Peer(ignore=never) as peer:
        with Client(peer.address, timeout=0.3, retries=1) as client, deadline(), \
                pytest.raises(ServerUnavailable) as gone:
            list(stream(client, Frames(1, [])))
        assert str(gone.value) == f"no reply from {peer.address} after 2 attempt(s) of 0.3 s"
        assert wait_until(lambda: peer.count(0) >= 2) and peer.count(0) == 2


def test_a_stream_with_keys_talks_to_a_curve_server():
    server_public, server_secret = zmq.curve_keypair()
    public, secret = zmq.curve_keypair()
    server = ServerKeys(server_public, server_secret, Path("unused"), Path("unused"))
    with Peer(secure=server.secure) as peer:
        results: list = []
        with Client(peer.address, timeout=5, retries=0, keys=ClientKeys(public, secret, server_public)) as client, \
                deadline():
            results = list(stream(client, Frames(2, results)))
    assert [r.names for r in results] == [["frame0"], ["frame1"]]


def test_a_whole_scan_that_finds_no_face_stops_the_tracking_and_the_search_begins():
    """A face until frame KEYFRAME's whole scan finds none; a tracked scan finds one only where a token points."""
    def answer(request):
        scan, track = request.header.get("scan"), request.header.get("track")
        face = (request.marker < KEYFRAME) if scan == "full" else bool(track)
        return recognized(request) if face else protocol.pack_reply(
            {"op": "recognize", "id": request.id, "faces": [], "timings_ms": {"total": 1.0}})

    with Peer(answer=answer, hold=0.05) as peer:
        run_stream(peer, KEYFRAME + 2 * SEARCH_KEYFRAME + 1, in_flight=1)
    hints = {r.marker: (r.header["scan"], r.header["track"]) for r in peer.received}
    assert hints[KEYFRAME - 1] == ("tracked", [f"token{KEYFRAME - 2}"]) and hints[KEYFRAME] == ("full", [])
    assert all(hints[KEYFRAME + n] == ("tracked", []) for n in range(1, SEARCH_KEYFRAME)), hints
    assert hints[KEYFRAME + SEARCH_KEYFRAME] == ("full", []) and hints[KEYFRAME + 2 * SEARCH_KEYFRAME] == ("full", [])
