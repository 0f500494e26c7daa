"""One frozen configuration of a server, built once from its command line (serve/cli.py).

A local worker gets it whole, as JSON (`to_json` / `from_json`), never flag by flag: adding an
option means a field here, its flag in serve/cli.py, and the one place that uses it.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from facewire.faces.settings import DetectorSettings, MatchSettings
from facewire.wire.limits import Limits

DEFAULT_BIND = "tcp://127.0.0.1:5555"
DEFAULT_HTTP_BIND = "127.0.0.1:8000"
DEFAULT_DB_NAME = ".facewire.db"


def default_db_url(known_faces: Path) -> str:
    """The gallery database used when none is named: DEFAULT_DB_NAME inside the known-faces folder,
    as an absolute sqlite:/// URL (the server and the `facewire-gallery` command agree on it)."""
    return f"sqlite:///{Path(known_faces).absolute() / DEFAULT_DB_NAME}"


@dataclass(frozen=True)
class Security:
    """CURVE keys: a server's keys folder, or a worker's own key pair and the server's public key."""

    keys: Path | None = None
    key: Path | None = None
    server_key: Path | None = None


@dataclass(frozen=True)
class Gateway:
    """The HTTP gateway (facewire/http): a client of the ZeroMQ server at `server` that answers HTTP on `bind`.

    `security` holds its CURVE key pair and the server's public key (`key`, `server_key`); `token_file`
    holds the bearer token every API call must carry (required off loopback); `connections` is how many
    requests it keeps in flight to the server at once, each waited for `timeout` seconds and resent
    `retries` times; `limits` caps uploads as the server caps frames; `cors` lists the origins let in.
    """

    server: str = DEFAULT_BIND
    bind: str = DEFAULT_HTTP_BIND
    security: Security = Security()
    token_file: Path | None = None
    connections: int = 8
    timeout: float = 20.0
    retries: int = 2
    limits: Limits = Limits()
    cors: tuple[str, ...] = ()
    log_level: str = "INFO"


@dataclass(frozen=True)
class Config:
    """Everything a server and its workers are told: gallery, detection, matching, limits, addresses, keys.

    `connect` and `status` are set for workers only: the broker's worker address, and where a
    local worker reports busy/idle to its supervisor. `http` is the HTTP gateway the server starts
    beside itself (its `server` is filled in once the server has bound), or None. `db` is the gallery
    database's URL (None: `KNOWN_FACES/.facewire.db`). `read_only` refuses
    every change to the gallery (a remote worker needs it on its own command line too).
    `allow_poor_photos` takes photos into the gallery that facewire.faces.enrolment would refuse.
    """

    known_faces: Path = Path("known_faces")
    db: str | None = None
    detector: DetectorSettings = DetectorSettings()
    matching: MatchSettings = MatchSettings()
    limits: Limits = Limits()
    bind: str = DEFAULT_BIND
    workers: int = 1
    worker_bind: str | None = None
    connect: str | None = None
    status: str | None = None
    security: Security = Security()
    hang_timeout: float = 60.0
    read_only: bool = False
    allow_poor_photos: bool = False
    log_level: str = "INFO"
    http: Gateway | None = None

    def gallery_db(self) -> str:
        """The gallery database's URL: `db`, or the SQLite file inside the gallery folder."""
        return self.db or default_db_url(self.known_faces)

    def gallery_folder(self) -> Path | None:
        """The folder synced into the database, if this host has one (remote workers on a shared
        PostgreSQL need none)."""
        return self.known_faces if self.known_faces.is_dir() else None

    def for_local_workers(self, backend: str, status: str) -> Config:
        """What a local worker is given: this configuration, connected to `backend`, reporting to `status`.

        Over tcp:// (workers on other hosts may share the address) it uses the server's own keys. Workers
        know nothing of the HTTP gateway."""
        keys = self.security.keys
        security = Security(key=keys / "server.key_secret", server_key=keys / "server.key") \
            if keys is not None and backend.startswith("tcp://") else Security()
        return replace(self, connect=backend, status=status, security=security, http=None)

    def to_json(self) -> str:
        return json.dumps(_plain(self))

    @classmethod
    def from_json(cls, text: str) -> Config:
        return _build(cls, json.loads(text))


def _plain(value: Any) -> Any:
    """Dataclasses as dicts and paths as strings, for JSON."""
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return str(value) if isinstance(value, Path) else value


def _build(cls: type, data: dict[str, Any]) -> Any:
    """The dataclass `cls` from `_plain`'s dict: nested dataclasses, paths and tuples restored by their type hints."""
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        kinds = typing.get_args(hints[name]) or (hints[name],)
        nested = next((kind for kind in kinds if dataclasses.is_dataclass(kind)), None)
        if nested is not None and value is not None:
            value = _build(nested, value)
        elif Path in kinds and value is not None:
            value = Path(value)
        elif typing.get_origin(hints[name]) is tuple:
            value = tuple(value)
        values[name] = value
    return cls(**values)
