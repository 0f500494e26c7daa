"""Arguments that cannot work are refused up front: a usage error naming the flag, exit 2, no traceback.

The client is pointed at an address where nothing listens, with a short timeout: an argument
wrongly accepted would show as "no reply" (or as exit 0), so a refusal proves nothing was sent.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from facewire.faces.settings import DetectorSettings, MatchSettings
from facewire.process import free_port
from facewire.serve.cli import configuration, parse_args

from .conftest import REPO_PROBES, ROOT, run_client

PHOTO = str(REPO_PROBES / "grace_hopper.jpg")

CLIENT_CASES = [
    (["--enroll", "", PHOTO], "--enroll"),
    (["--enroll", "   ", PHOTO], "--enroll"),
    (["--enroll", "../evil", PHOTO], "--enroll"),
    (["--enroll", ".hidden", PHOTO], "--enroll"),
    (["--enroll", "tab\there", PHOTO], "--enroll"),
    (["--enroll", "x" * 101, PHOTO], "--enroll"),
    (["--enroll", "Ada"], "--enroll"),
    (["--enroll", "Ada", PHOTO, PHOTO], "--enroll"),
    (["--remove", ""], "--remove"),
    (["--remove", "a/b"], "--remove"),
    (["--timeout", "0", PHOTO], "--timeout"),
    (["--timeout", "-1", PHOTO], "--timeout"),
    (["--timeout", "nan", PHOTO], "--timeout"),
    (["--retries", "-1", PHOTO], "--retries"),
    (["--in-flight", "0", PHOTO], "--in-flight"),
    (["--tolerance", "-0.1", PHOTO], "--tolerance"),
    (["--tolerance", "2.5", PHOTO], "--tolerance"),
    (["--camera", "-1"], "--camera"),
    (["--video", "clip.mp4", "--camera", "0"], "--camera"),
    (["--video", "clip.mp4", PHOTO], "--video"),
    (["--camera", "0", PHOTO], "--camera"),
    (["--output", "out.mp4", PHOTO], "--output"),
    (["--report", "r.csv", "--video", "clip.mp4"], "--report"),
    (["--report", "r.csv", "--ping"], "--report"),
    (["--save", "out", "--camera", "0"], "--save"),
    (["--save", "out", "--list"], "--save"),
    (["--tolerance", "0.5", "--video", "clip.mp4"], "--tolerance"),
    (["-r", "--enroll", "Ada", PHOTO], "--recursive"),
    (["--ping", PHOTO], "--ping"),
    (["--ping", "--list"], "--ping and --list"),
    (["--list", PHOTO], "--list"),
    (["--reload", PHOTO], "--reload"),
    (["--remove", "Ada", PHOTO], "--remove"),
    (["--report", "/no/such/folder/r.csv", PHOTO], "--report"),
    (["--report", str(ROOT), PHOTO], "--report"),
    (["--save", PHOTO, PHOTO], "--save"),
    ([], "IMAGE"),
    (["--verify", PHOTO], "--verify"),
    (["--verify", PHOTO, PHOTO, PHOTO], "--verify"),
    (["--verify", PHOTO, PHOTO, "--name", "Ada"], "--verify"),
    (["--verify", "--name", "Ada"], "--verify"),
    (["--verify", PHOTO, "--name", "../evil"], "--name"),
    (["--name", "Ada", PHOTO], "--name"),
    (["--ping", "--verify", PHOTO, PHOTO], "--ping and --verify"),
    (["--verify", PHOTO, PHOTO, "--report", "r.csv"], "--report"),
]


@pytest.fixture(scope="module")
def nowhere() -> list[str]:
    """Client options for an address where nothing listens: an accepted run fails fast with "no reply"."""
    return ["--server", f"tcp://127.0.0.1:{free_port()}", "--no-show", "--timeout", "0.5", "--retries", "0"]


def assert_refused(done: subprocess.CompletedProcess, flag: str) -> None:
    assert done.returncode == 2 and "usage:" in done.stderr, done.stderr
    assert flag in done.stderr.splitlines()[-1], done.stderr
    assert "Traceback" not in done.stderr and "no reply" not in done.stderr and done.stdout == ""


@pytest.mark.parametrize("args, flag", CLIENT_CASES, ids=[" ".join(a)[:40] for a, _ in CLIENT_CASES])
def test_the_client_refuses_before_sending(nowhere, args, flag, tmp_path):
    assert_refused(run_client(*nowhere, *args, cwd=tmp_path, timeout=60), flag)


def test_good_arguments_do_reach_the_missing_server(nowhere, tmp_path):
    """The control: accepted arguments get as far as the network, so the refusals above are real."""
    for args in (["--enroll", "Ada Lovelace", PHOTO], ["--remove", "Ada"], ["--tolerance", "0", PHOTO], ["--ping"],
                 ["--verify", PHOTO, PHOTO], ["--verify", PHOTO, "--name", "Ada", "--tolerance", "0.4"]):
        done = run_client(*nowhere, *args, cwd=tmp_path, timeout=60)
        assert done.returncode == 2 and "no reply" in done.stderr and "usage:" not in done.stderr, done.stderr


SERVER_CASES = [
    (["--workers", "-1"], "--workers"),
    (["--tolerance", "-0.5"], "--tolerance"),
    (["--tolerance", "2.01"], "--tolerance"),
    (["--match", "knn", "--k", "0"], "--k"),
    (["--k", "3"], "--k"),
    (["--min-face", "0"], "--min-face"),
    (["--min-face-fraction", "-0.1"], "--min-face-fraction"),
    (["--min-face-fraction", "1.5"], "--min-face-fraction"),
    (["--max-megapixels", "0"], "--max-megapixels"),
    (["--hang-timeout", "0"], "--hang-timeout"),
    (["--upsample", "-1"], "--upsample"),
    (["--upsample", "1"], "--detector"),  # MTCNN, the default detector, scales its picture itself
    (["--detector", "mtcnn", "--upsample", "0"], "--detector"),
    (["--model", "mtcnn", "--upsample", "0"], "--detector"),
    (["--detector", "viola-jones"], "--detector"),
    (["--model", "viola-jones"], "--model"),
    (["--mtcnn-thresholds", "0.6", "0.7"], "--mtcnn-thresholds"),
    (["--mtcnn-thresholds", "0.6", "0.7", "1.5"], "--mtcnn-thresholds"),
    (["--known-faces", "/no/such/gallery"], "--known-faces"),
    (["--connect", "tcp://127.0.0.1:9"], "--connect"),
    (["--key", "a.key_secret", "--server-key", "server.key"], "--key"),
    (["--worker", "--connect", "tcp://127.0.0.1:9", "--keys", "keys"], "--keys"),
    (["--worker-bind", "tcp://127.0.0.1:9"], "--worker-bind"),
    (["--encoder", "tensorflow"], "--encoder"),
    (["--providers", "NoSuchExecutionProvider"], "--providers"),
    (["--encoder", "dlib", "--providers", "CPUExecutionProvider"], "--providers"),
    (["--detect-threads", "3"], "--detect-threads"),
    (["--cache", "old.npz"], "--db"),
    (["--db", "mysql://host/gallery"], "--db"),
    (["--detect-threads", "many"], "--detect-threads"),
    (["--decision", "vote"], "--decision"),
    (["--decision", "nearest", "--margin", "0.1"], "--margin"),
    (["--decision", "nearest", "--ceiling", "0.7"], "--ceiling"),
    (["--ceiling", "0.55"], "--ceiling"),  # below the tolerance
    (["--match", "knn", "--decision", "margin"], "--decision"),
    (["--margin", "-0.1"], "--margin"),
]


@pytest.mark.parametrize("args, flag", SERVER_CASES, ids=[" ".join(a)[:40] for a, _ in SERVER_CASES])
def test_the_server_refuses_arguments_that_cannot_work(repo_gallery, args, flag):
    command = [sys.executable, str(ROOT / "server.py"), "--known-faces", str(repo_gallery),
               "--bind", f"tcp://127.0.0.1:{free_port()}", "--workers", "1", *args]
    assert_refused(subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60), flag)


def test_model_is_still_an_alias_of_detector_and_upsample_goes_with_dlibs_detectors():
    def detector(*args: str) -> DetectorSettings:
        return configuration(parse_args(["--known-faces", str(REPO_PROBES), *args])).detector

    assert detector().detector == "mtcnn" and detector().upsample is None  # the default
    assert detector("--model", "hog").detector == "hog"
    assert detector("--model", "cnn") == detector("--detector", "cnn")
    assert detector("--model", "hog", "--upsample", "1") == DetectorSettings(detector="hog", upsample=1)
    assert detector("--detector", "cnn", "--upsample", "0").upsample == 0
    assert detector("--mtcnn-thresholds", "0.5", "0.6", "0.8").thresholds == (0.5, 0.6, 0.8)


def test_the_decision_rule_and_its_ceiling_which_moves_with_the_tolerance_unless_given():
    def matching(*args: str) -> MatchSettings:
        return configuration(parse_args(["--known-faces", str(REPO_PROBES), *args])).matching

    assert matching() == MatchSettings() and matching().decision == "margin"
    assert matching("--decision", "nearest") == MatchSettings(decision="nearest")
    assert matching("--tolerance", "0.5") == MatchSettings(0.5, ceiling=0.55)
    assert matching("--tolerance", "0.5", "--ceiling", "0.6", "--margin", "0.1") == MatchSettings(0.5, ceiling=0.6,
                                                                                                  margin=0.1)
    assert matching("--match", "knn").decision == "nearest"  # the vote has its own rule
