"""Video: the shared clip through the real server, with its two portraits as the gallery."""

from __future__ import annotations

import json
import time

import cv2
import pytest

from facewire.process import ServerProcess
from facewire.service import tracked_matches
from facewire.track import Tracker, Vouch

from .conftest import run_client


@pytest.fixture(scope="module")
def video_server(shared_faces, tmp_path_factory):
    folder = tmp_path_factory.mktemp("video")
    with ServerProcess(shared_faces / "video", folder / "server.log", "--cache", str(folder / "cache.npz")) as server:
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
    [kept, fresh, refused] = tracked_matches([same, moved_far, forged], [ann, mallory], 0.6, tracker)
    assert kept.name == "ann" and kept.distance == 0.3 and fresh is None and refused is None
    assert tracked_matches([same], [ann], 0.5, tracker) == [None]  # named under another tolerance
