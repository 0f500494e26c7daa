"""CURVE keys: make them, and put them on sockets (pyzmq's zmq.auth does the cryptography).

Layout of a keys folder:
    server.key, server.key_secret    the server's pair (the public half goes to every client)
    authorized/NAME.key              public keys the server lets in to recognise (its allow-list)
    editors/NAME.key                 public keys let in that may also change the gallery
    NAME.key, NAME.key_secret        a client's pair: give it these two and server.key

    python -m facewire.wire.keys DIR --client alice --editor bob

Who sent a request travels with it as a `Sender` (its key's name, and whether it may edit):
the ZAP handler names the key of each connection, and the broker stamps each request with it.
"""

from __future__ import annotations

import argparse
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from facewire.wire.transport import plain

SERVER = "server"
AUTHORIZED = "authorized"
EDITORS = "editors"


class KeysError(ValueError):
    """A keys folder or key file that cannot be used."""


@dataclass(frozen=True)
class Sender:
    """Who sent a request: the name of its CURVE key, and whether that key may change the gallery.

    Without CURVE nobody is known and everyone may edit (the server's address is then the only guard)."""

    name: str
    editor: bool

    def stamp(self) -> bytes:
        """The frame the broker puts before a request: "editor:NAME" or "viewer:NAME"."""
        return f"{'editor' if self.editor else 'viewer'}:{self.name}".encode()

    @classmethod
    def from_stamp(cls, stamp: bytes | memoryview) -> Sender:
        """The sender a broker's stamp (or the ZAP handler's User-Id) names."""
        role, _, name = bytes(stamp).decode("utf-8", "replace").partition(":")
        return cls(name or "?", role == "editor")


ANONYMOUS = Sender("anonymous", True)


@dataclass(frozen=True)
class ServerKeys:
    """What a server needs: its own key pair and the folders of client keys it accepts."""

    public: bytes
    secret: bytes
    authorized: Path
    editors: Path

    @classmethod
    def load(cls, folder: Path) -> ServerKeys:
        public, secret = _load_pair(Path(folder) / f"{SERVER}.key_secret")
        authorized, editors = Path(folder) / AUTHORIZED, Path(folder) / EDITORS
        if not authorized.is_dir() and not editors.is_dir():
            raise KeysError(f"{authorized} and {editors} are missing: no client could ever connect")
        return cls(public, secret, authorized, editors)

    @contextmanager
    def admitting(self, context: zmq.Context) -> Iterator[None]:
        """The ZAP handler of `context`, for the block: bind inside it, or CURVE admits any key.

        It names each admitted key (`user_id`), and stops at the end of the block, so that the
        context can end."""
        auth = _NamingAuthenticator(context, self)
        auth.start()
        auth.configure_curve_callback(domain="*", credentials_provider=self)
        try:
            yield
        finally:
            auth.stop()

    def callback(self, domain: str, client_key: bytes) -> bool:
        """zmq.auth's question: may this client in? Yes for both lists and the server's own key.

        The folders are read at each new connection, so adding a key needs no restart.
        """
        return self.sender(client_key) is not None

    def sender(self, client_key: bytes) -> Sender | None:
        """Who holds `client_key`: an editor (editors/ or the server's own key), a viewer
        (authorized/), or None for a stranger."""
        if client_key == self.public:
            return Sender(SERVER, True)
        for folder, editor in ((self.editors, True), (self.authorized, False)):
            name = _named_keys(folder).get(client_key)
            if name is not None:
                return Sender(name, editor)
        return None

    def allowed(self) -> set[bytes]:
        return set(_named_keys(self.authorized)) | set(_named_keys(self.editors))

    def secure(self, socket: zmq.Socket) -> None:
        socket.curve_secretkey = self.secret
        socket.curve_publickey = self.public
        socket.curve_server = True

    def as_client(self) -> ClientKeys:
        """The server's own identity as a client of itself (its readiness ping, local workers)."""
        return ClientKeys(self.public, self.secret, self.public)


@dataclass(frozen=True)
class ClientKeys:
    """What a client (or a remote worker) needs: its key pair and the server's public key."""

    public: bytes
    secret: bytes
    server_public: bytes

    @classmethod
    def load(cls, secret_file: Path, server_public_file: Path) -> ClientKeys:
        public, secret = _load_pair(secret_file)
        try:
            server_public, _ = zmq.auth.load_certificate(str(server_public_file))
        except (OSError, ValueError) as exc:
            raise KeysError(f"cannot read the server's public key {server_public_file}: {exc}") from None
        return cls(public, secret, server_public)

    def secure(self, socket: zmq.Socket) -> None:
        socket.curve_secretkey = self.secret
        socket.curve_publickey = self.public
        socket.curve_serverkey = self.server_public


class _NamingAuthenticator(ThreadAuthenticator):
    """pyzmq's ZAP handler, with each admitted connection's User-Id set to its Sender's stamp."""

    def __init__(self, context: zmq.Context, keys: ServerKeys):
        super().__init__(context)
        self.keys = keys

    def curve_user_id(self, client_public_key: bytes) -> str:
        """The stamp of the key's holder (zmq.auth hands the raw 32 bytes; key files hold Z85)."""
        sender = self.keys.sender(z85.encode(client_public_key))
        return (sender or Sender("?", False)).stamp().decode()


def _named_keys(folder: Path) -> dict[bytes, str]:
    """The public keys in `folder` (NAME.key files), each with its NAME; unreadable files are skipped."""
    keys = {}
    for path in sorted(folder.glob("*.key")):
        try:
            keys[zmq.auth.load_certificate(str(path))[0]] = path.stem
        except (OSError, ValueError):
            continue
    return keys


class NoKeys:
    """No CURVE, for a server without --keys and a client without --key: every socket stays plain."""

    secure = staticmethod(plain)

    @contextmanager
    def admitting(self, context: zmq.Context) -> Iterator[None]:
        yield

    def as_client(self) -> NoKeys:
        return self


PLAIN = NoKeys()


def load_server_keys(folder: Path | None) -> ServerKeys | NoKeys:
    """The keys in `folder`, or PLAIN when there is none."""
    return PLAIN if folder is None else ServerKeys.load(folder)


def load_client_keys(secret_file: Path | None, server_public_file: Path | None) -> ClientKeys | NoKeys:
    """A client's (or worker's) key pair and the server's public key, or PLAIN when not given."""
    return PLAIN if secret_file is None or server_public_file is None else ClientKeys.load(secret_file,
                                                                                          server_public_file)


def _load_pair(secret_file: Path) -> tuple[bytes, bytes]:
    try:
        public, secret = zmq.auth.load_certificate(str(secret_file))
    except (OSError, ValueError) as exc:
        raise KeysError(f"cannot read key pair {secret_file}: {exc}") from None
    if not secret:
        raise KeysError(f"{secret_file} holds no secret key")
    return public, secret


def make_keys(folder: Path, clients: list[str], editors: list[str] = ()) -> list[Path]:
    """Create the server pair (if missing) and a pair per client, each client's public key in
    authorized/ (may recognise) and each editor's in editors/ (may also change the gallery)."""
    folder = Path(folder)
    (folder / AUTHORIZED).mkdir(parents=True, exist_ok=True)
    (folder / EDITORS).mkdir(exist_ok=True)
    wanted = [(name, AUTHORIZED) for name in clients] + [(name, EDITORS) for name in editors]
    for name, _ in wanted:
        if not name or "/" in name or ":" in name or name.startswith(".") or name in (SERVER, AUTHORIZED, EDITORS):
            raise KeysError(f"bad key name {name!r}")
    made = []
    for name, role in ([(SERVER, None)] if not (folder / f"{SERVER}.key_secret").exists() else []) + wanted:
        public, secret = zmq.auth.create_certificates(str(folder), name)
        Path(secret).chmod(0o600)
        made.append(Path(secret))
        if role is not None:
            shutil.copy(public, folder / role / f"{name}.key")
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="keys folder (created if missing)")
    parser.add_argument("--client", action="append", default=[], metavar="NAME",
                        help="make a client key pair that may recognise")
    parser.add_argument("--editor", action="append", default=[], metavar="NAME",
                        help="make a client key pair that may also enrol, remove and reload")
    args = parser.parse_args()
    for path in make_keys(args.folder, args.client, args.editor):
        print(f"made {path} (and its .key public half)")
    print(f"server: python server.py --keys {args.folder}")
    for name in args.client + args.editor:
        print(f"client {name}: python client.py --key {args.folder / (name + '.key_secret')} "
              f"--server-key {args.folder / 'server.key'} ...")


if __name__ == "__main__":
    main()
