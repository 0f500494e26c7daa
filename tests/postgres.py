"""A throwaway PostgreSQL 15 cluster for the database tests, and a fresh database per test.

`postgres_url` (session): initdb in a temporary folder (as the postgres user when we are root),
pg_ctl start listening only on a unix socket in that folder (no TCP), one database; stopped and
deleted afterwards, also on failure. Under CI (env CI set), or whenever we are root, a cluster
that cannot be started FAILS the tests with the reason: they never skip there.

`database_url` (per test, parametrized "sqlite" and "postgresql"): an empty gallery database URL
on each backend, so every database test runs against both.

Test modules use these with `pytest_plugins = ("tests.postgres",)`.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

import pytest

PG_BIN = Path("/usr/lib/postgresql/15/bin")
START_SECONDS = 60
_databases = itertools.count(1)


class ClusterError(RuntimeError):
    """The throwaway cluster could not be made or started; the message says why."""


def _as_postgres(command: list[str]) -> list[str]:
    """Run as the postgres user when we are root (PostgreSQL refuses to run as root)."""
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(_as_postgres(command), capture_output=True, text=True, timeout=START_SECONDS)
    if result.returncode != 0:
        raise ClusterError(f"{what} failed ({result.returncode}): {(result.stderr or result.stdout).strip()}")


class Cluster:
    """A PostgreSQL cluster in its own temporary folder, reachable only through the socket there."""

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise ClusterError(f"{PG_BIN / 'initdb'} not found: install Debian's postgresql package (version 15)")
        self.folder = Path(tempfile.mkdtemp(prefix="facewire-pg-"))
        self.data = self.folder / "data"
        self.started = False
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.folder, owner.pw_uid, owner.pw_gid)

    def start(self) -> str:
        """initdb, start, create database "facewire"; returns its URL."""
        _run([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync",
              "-E", "UTF8", "--locale", "C.UTF-8"], "initdb")
        options = f"-c listen_addresses='' -k {self.folder} -c fsync=on"
        _run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.folder / "server.log"), "-w",
              "-t", str(START_SECONDS), "-o", options, "start"], "pg_ctl start")
        self.started = True
        _run([str(PG_BIN / "createdb"), "-h", str(self.folder), "-U", "postgres", "facewire"], "createdb")
        return self.url("facewire")

    def url(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={quote(str(self.folder), safe='')}"

    def stop(self) -> None:
        """Stop the server (fast: it is throwaway) and delete the folder."""
        try:
            if self.started:
                _run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"], "pg_ctl stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def must_not_skip() -> bool:
    """PostgreSQL tests may only be skipped on a developer's machine, as a non-root user, outside CI."""
    return bool(os.environ.get("CI")) or os.geteuid() == 0


@pytest.fixture(scope="session")
def postgres_url():
    """The URL of a database in a throwaway cluster, for the whole session."""
    try:
        cluster = Cluster()
    except ClusterError as exc:
        _unavailable(str(exc))
    try:
        try:
            url = cluster.start()
        except (ClusterError, OSError, subprocess.TimeoutExpired) as exc:
            _unavailable(str(exc))
        yield url
    finally:
        cluster.stop()


def _unavailable(reason: str) -> None:
    if must_not_skip():
        pytest.fail(f"PostgreSQL could not be started: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL could not be started: {reason}")


def fresh_postgres_database(admin_url: str) -> tuple[str, str]:
    """A new empty database in the cluster: (its name, its URL)."""
    import psycopg

    name = f"t{os.getpid()}_{next(_databases)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return name, admin_url.replace("/facewire?", f"/{name}?", 1)


def drop_postgres_database(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def postgres_database_url(postgres_url):
    """A new empty database in the session's cluster, dropped after the test."""
    name, url = fresh_postgres_database(postgres_url)
    try:
        yield url
    finally:
        drop_postgres_database(postgres_url, name)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """An empty gallery database URL on each backend in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'gallery.db'}"
    return request.getfixturevalue("postgres_database_url")
