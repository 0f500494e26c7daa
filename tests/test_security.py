"""CURVE: who gets in, what the wire shows, and the warning for an open public bind."""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from facewire.client.client import Client
from facewire.faces import images
from facewire.process import ServerProcess, free_port
from facewire.wire import protocol
from facewire.wire.keys import PLAIN, ClientKeys, NoKeys, make_keys
from facewire.wire.ping import answers_ping
from facewire.wire.transport import is_public

from .conftest import REPO_PROBES, run_client


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("keys")
    make_keys(folder, ["alice", "mallory"])
    (folder / "authorized" / "mallory.key").unlink()  # mallory has a key pair, but is not on the list
    return folder


@pytest.fixture(scope="module")
def curve_server(repo_gallery, keys, tmp_path_factory):
    with ServerProcess(repo_gallery, tmp_path_factory.mktemp("curve") / "server.log", "--keys", str(keys),
                       wait=False) as server:
        alice = ClientKeys.load(keys / "alice.key_secret", keys / "server.key")
        deadline = time.monotonic() + 60
        while not answers_ping(server.address, 500, alice.secure) and time.monotonic() < deadline:
            pass
        yield server


def client_args(keys: Path, name: str) -> list[str]:
    return ["--key", str(keys / f"{name}.key_secret"), "--server-key", str(keys / "server.key")]


def test_an_authorised_client_is_answered(curve_server, keys):
    done = run_client("--server", curve_server.address, "--no-show", *client_args(keys, "alice"),
                      str(REPO_PROBES / "grace_hopper.jpg"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("grace_hopper")


@pytest.mark.parametrize("who", ["mallory", "no keys"])
def test_strangers_get_silence_and_time_out_cleanly(curve_server, keys, who):
    extra = [] if who == "no keys" else client_args(keys, who)
    started = time.monotonic()
    done = run_client("--server", curve_server.address, "--no-show", "--timeout", "1", "--retries", "1", *extra,
                      str(REPO_PROBES / "grace_hopper.jpg"))
    assert done.returncode == 2 and "no reply" in done.stderr and "Traceback" not in done.stderr
    assert time.monotonic() - started < 10
    assert curve_server.alive()


def test_a_key_added_to_the_list_works_without_a_restart(curve_server, keys, tmp_path):
    make_keys(keys, ["carol"])
    with Client(curve_server.address, timeout=10, keys=ClientKeys.load(keys / "carol.key_secret", keys / "server.key")) as carol:
        assert carol.ping()["ok"] is True


class Relay:
    """A TCP relay between clients and a server that records every byte, as a wire tap would."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.captured = bytearray()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for source, sink in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        while data := self._read(source):
            with self.lock:
                self.captured += data
            sink.sendall(data)
        sink.close()

    @staticmethod
    def _read(source: socket.socket) -> bytes:
        try:
            return source.recv(65536)
        except OSError:
            return b""

    def close(self) -> None:
        self.listener.close()


def tapped_request(server_address: str, client_keys: ClientKeys | NoKeys) -> tuple[bytes, bytes]:
    """Send a photo through a wire tap; return (a distinctive run of its pixels, what the tap saw)."""
    image = images.read_image(REPO_PROBES / "grace_hopper.jpg")
    relay = Relay(int(server_address.rsplit(":", 1)[1]))
    try:
        with Client(f"tcp://127.0.0.1:{relay.port}", timeout=20, keys=client_keys) as client:
            assert client.recognize(image).names == ["grace_hopper"]
    finally:
        relay.close()
    pixels = protocol.raw_bytes(image).tobytes()
    return pixels[100_000:100_064], bytes(relay.captured)


def test_the_wire_holds_no_image_bytes_in_clear(curve_server, keys, repo_server):
    sample, seen = tapped_request(curve_server.address, ClientKeys.load(keys / "alice.key_secret", keys / "server.key"))
    assert len(seen) > 400_000 and sample not in seen and b"grace_hopper" not in seen
    sample, seen = tapped_request(repo_server.address, PLAIN)  # the control: without CURVE the tap reads it all
    assert sample in seen and b"grace_hopper" in seen


def test_workers_behind_a_curve_tcp_backend(repo_gallery, keys, tmp_path):
    backend = f"tcp://127.0.0.1:{free_port()}"  # the local workers authenticate with the server's own key
    with ServerProcess(repo_gallery, tmp_path / "broker.log", "--keys", str(keys), "--workers", "2",
                       "--worker-bind", backend, wait=False) as broker:
        alice = ClientKeys.load(keys / "alice.key_secret", keys / "server.key")
        deadline = time.monotonic() + 60
        while not answers_ping(broker.address, 500, alice.secure) and time.monotonic() < deadline:
            pass
        with Client(broker.address, timeout=20, keys=alice) as client:
            assert client.recognize(np.zeros((50, 50, 3), np.uint8)).names == []


def test_open_public_bind_warns_loudly(repo_gallery, tmp_path):
    with ServerProcess(repo_gallery, tmp_path / "server.log", "--workers", "1", "--bind",
                       f"tcp://0.0.0.0:{free_port()}", wait=False) as server:
        assert "!!!" in server.log() and "no CURVE" in server.log()


@pytest.mark.parametrize("address, public", [
    ("tcp://127.0.0.1:5555", False), ("tcp://localhost:5555", False), ("tcp://[::1]:5555", False),
    ("ipc:///tmp/x", False), ("tcp://0.0.0.0:5555", True), ("tcp://*:5555", True), ("tcp://192.0.2.7:5555", True),
])
def test_which_addresses_are_public(address, public):
    assert is_public(address) is public


def test_a_missing_keys_folder_is_a_clear_error(repo_gallery, tmp_path):
    with pytest.raises(RuntimeError) as info:
        ServerProcess(repo_gallery, tmp_path / "server.log", "--keys", str(tmp_path / "nowhere"))
    assert "cannot read key pair" in str(info.value) and "Traceback" not in str(info.value)


def test_logs_hold_names_and_timings_never_pixels_or_encodings(repo_server, tmp_path):
    mark = repo_server.log_mark()
    for probe in REPO_PROBES.glob("*.jpg"):  # sizes no other test sends
        cv2.imwrite(str(tmp_path / probe.name), cv2.imread(str(probe))[1:, 1:])
    run_client("--server", repo_server.address, "--no-show", "--json", str(tmp_path))
    log = repo_server.wait_for_log("recognize 357x419: grace_hopper in", since=mark)
    assert log.count("recognize ") == len(list(REPO_PROBES.glob("*.jpg")))
    for line in log.splitlines():
        assert len(line) < 400, line[:200]  # no frames, arrays or buffers dumped
        numbers = [word for word in line.replace(",", " ").split() if word.lstrip("-").replace(".", "", 1).isdigit()]
        assert len(numbers) < 20, line[:200]  # no 128-number encodings


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("secured", [False, True], ids=["plain", "keys"])
def test_sigterm_stops_the_server_within_seconds_with_or_without_keys(repo_gallery, keys, tmp_path, secured, workers):
    extra = ["--keys", str(keys)] if secured else []
    server = ServerProcess(repo_gallery, tmp_path / "server.log", "--workers", workers, *extra, wait=False)
    try:
        server.wait_for_log("ready on", within=120)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        status = server.process.wait(timeout=30)
        took = time.monotonic() - started
    finally:
        server.stop(signal.SIGKILL)
    log = server.log()
    assert status == 0, log
    assert took < 5, f"SIGTERM took {took:.1f} s"  # ServerProcess.stop would SIGKILL after 10 s
    assert log.rstrip().endswith("stopped") and "Traceback" not in log, log
