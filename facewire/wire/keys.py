"""CURVE keys: make them, and put them on sockets (pyzmq's zmq.auth does the cryptography).

Layout of a keys folder:
    server.key, server.key_secret    the server's pair (the public half goes to every client)
    authorized/NAME.key              public keys the server lets in (its allow-list)
    NAME.key, NAME.key_secret        a client's pair: give it these two and server.key

    python -m facewire.wire.keys DIR --client alice --client bob
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

from facewire.wire.transport import plain

SERVER = "server"
AUTHORIZED = "authorized"


class KeysError(ValueError):
    """A keys folder or key file that cannot be used."""


@dataclass(frozen=True)
class ServerKeys:
    """What a server needs: its own key pair and the folder of client keys it accepts."""

    public: bytes
    secret: bytes
    authorized: Path

    @classmethod
    def load(cls, folder: Path) -> ServerKeys:
        public, secret = _load_pair(Path(folder) / f"{SERVER}.key_secret")
        authorized = Path(folder) / AUTHORIZED
        if not authorized.is_dir():
            raise KeysError(f"{authorized} is missing: no client could ever connect")
        return cls(public, secret, authorized)

    @contextmanager
    def admitting(self, context: zmq.Context) -> Iterator[None]:
        """The ZAP handler of `context`, for the block: bind inside it, or CURVE admits any key.

        It stops at the end of the block, so that the context can end."""
        auth = ThreadAuthenticator(context)
        auth.start()
        auth.configure_curve_callback(domain="*", credentials_provider=self)
        try:
            yield
        finally:
            auth.stop()

    def callback(self, domain: str, client_key: bytes) -> bool:
        """zmq.auth's question: may this client in? Yes for the allow-list and the server's own key.

        The folder is read at each new connection, so adding a key needs no restart.
        """
        return client_key == self.public or client_key in self.allowed()

    def allowed(self) -> set[bytes]:
        keys = set()
        for path in self.authorized.glob("*.key"):
            try:
                keys.add(zmq.auth.load_certificate(str(path))[0])
            except (OSError, ValueError):
                continue
        return keys

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


def make_keys(folder: Path, clients: list[str]) -> list[Path]:
    """Create the server pair (if missing) and a pair per client, authorising each client."""
    folder = Path(folder)
    (folder / AUTHORIZED).mkdir(parents=True, exist_ok=True)
    made = []
    for name in ([SERVER] if not (folder / f"{SERVER}.key_secret").exists() else []) + clients:
        if "/" in name or name.startswith(".") or name in ("", AUTHORIZED):
            raise KeysError(f"bad key name {name!r}")
        public, secret = zmq.auth.create_certificates(str(folder), name)
        Path(secret).chmod(0o600)
        made.append(Path(secret))
        if name != SERVER:
            shutil.copy(public, folder / AUTHORIZED / f"{name}.key")
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="keys folder (created if missing)")
    parser.add_argument("--client", action="append", default=[], metavar="NAME", help="make and authorise a client key pair")
    args = parser.parse_args()
    for path in make_keys(args.folder, args.client):
        print(f"made {path} (and its .key public half)")
    print(f"server: python server.py --keys {args.folder}")
    for name in args.client:
        print(f"client {name}: python client.py --key {args.folder / (name + '.key_secret')} "
              f"--server-key {args.folder / 'server.key'} ...")


if __name__ == "__main__":
    main()
