"""The one configuration: built from the server's command line, handed whole to workers as JSON."""

from __future__ import annotations

from pathlib import Path

from facewire.config import Config, Gateway, Security
from facewire.faces.settings import DetectorSettings, MatchSettings
from facewire.serve import service
from facewire.serve.cli import configuration, parse_args
from facewire.wire import protocol
from facewire.wire.limits import Limits

from .conftest import REPO_KNOWN


def test_the_command_line_becomes_one_configuration():
    args = parse_args(["--known-faces", str(REPO_KNOWN), "--tolerance", "0.45", "--match", "knn", "--k", "3",
                       "--detector", "cnn", "--upsample", "1", "--encoder", "dlib", "--min-face", "20", "--min-face-fraction", "0.1",
                       "--detect-threads", "2", "--max-megapixels", "2.5", "--db", "sqlite:////tmp/c.db", "--workers", "3", "--hang-timeout", "9",
                       "--keys", "/tmp/keys", "--bind", "tcp://127.0.0.1:6000", "--log-level", "DEBUG"])
    assert configuration(args) == Config(
        known_faces=REPO_KNOWN, db="sqlite:////tmp/c.db", detector=DetectorSettings("cnn", 1, 20, 0.1, "dlib", (), "2", (0.6, 0.7, 0.7)),
        matching=MatchSettings(0.45, "knn", 3, "nearest", 0.5), limits=Limits(2_500_000), bind="tcp://127.0.0.1:6000", workers=3,
        security=Security(keys=Path("/tmp/keys")), hang_timeout=9.0, log_level="DEBUG")


def test_a_configuration_survives_its_json_whole():
    config = Config(known_faces=Path("/g"), db="postgresql://u@h/g", detector=DetectorSettings("hog", None, 15, 0.25, "onnx", ("CPUExecutionProvider",), "1"),
                    matching=MatchSettings(0.5, "knn", None), limits=Limits(123), workers=2,
                    connect="ipc:///tmp/w", status="ipc:///tmp/s",
                    security=Security(key=Path("/k/server.key_secret"), server_key=Path("/k/server.key")))
    assert Config.from_json(config.to_json()) == config
    assert Config.from_json(Config().to_json()) == Config()
    margin = Config(matching=MatchSettings(0.5, "nearest", None, "margin", 0.7, 0.1))
    assert Config.from_json(margin.to_json()) == margin
    assert Config().detector.detector == "mtcnn"


def test_the_detector_and_mtcnns_thresholds_survive_the_json():
    for detector in (DetectorSettings(detector="mtcnn", thresholds=(0.5, 0.65, 0.8)),
                     DetectorSettings(detector="hog", upsample=1, thresholds=(0.6, 0.7, 0.9)),
                     DetectorSettings(detector="cnn", min_face=24)):
        config = Config(detector=detector)
        back = Config.from_json(config.to_json())
        assert back == config and back.detector.thresholds == detector.thresholds
        assert isinstance(back.detector.thresholds, tuple)  # hashable, as DetectorSettings must be
        assert back.detector.encoding_tag() == detector.encoding_tag()
    args = parse_args(["--known-faces", str(REPO_KNOWN), "--mtcnn-thresholds", "0.5", "0.65", "0.8"])
    config = configuration(args)
    assert config.detector == DetectorSettings(detector="mtcnn", thresholds=(0.5, 0.65, 0.8))
    assert Config.from_json(config.to_json()) == config


def test_local_workers_use_the_servers_keys_only_over_tcp():
    config = Config(security=Security(keys=Path("/k")))
    over_tcp = config.for_local_workers("tcp://10.0.0.1:7000", "ipc:///s")
    assert (over_tcp.connect, over_tcp.status) == ("tcp://10.0.0.1:7000", "ipc:///s")
    assert over_tcp.security == Security(key=Path("/k/server.key_secret"), server_key=Path("/k/server.key"))
    assert config.for_local_workers("ipc:///w", "ipc:///s").security == Security()
    assert Config().for_local_workers("tcp://10.0.0.1:7000", "ipc:///s").security == Security()


def test_every_op_of_the_protocol_has_one_entry_in_the_services_table():
    assert sorted(service.OPS) == sorted(protocol.OPS)
    assert all(callable(handler) for handler in service.OPS.values())


def test_server_http_becomes_the_gateway_it_starts_which_workers_never_see(tmp_path):
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    args = parse_args(["--known-faces", str(REPO_KNOWN), "--max-megapixels", "2.5", "--http", "[::1]:8001",
                       "--http-token-file", str(token), "--log-level", "WARNING"])
    config = configuration(args)
    assert config.http == Gateway(bind="[::1]:8001", token_file=token, limits=Limits(2_500_000), log_level="WARNING")
    assert configuration(parse_args(["--known-faces", str(REPO_KNOWN)])).http is None
    assert config.for_local_workers("ipc:///w", "ipc:///s").http is None
    with_cors = Config(http=Gateway(cors=("https://a.example", "https://b.example"), security=Security(key=Path("/k"))))
    assert Config.from_json(with_cors.to_json()) == with_cors
