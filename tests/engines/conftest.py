"""Real PostgreSQL and sqlite3 processes for the engines' own SQL, without a cluster: a server on a loopback
address of its own (outside every bed's pod range), a fresh database per test, the sqlite3 CLI as a local
process standing in for pod exec."""

from __future__ import annotations

import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from enginekit import PG_IP, local_exec
from rolecall.engines.sqlite import SqliteSession
from testbed import cluster, servers

ROOT = Path("/tmp/rolecall-engine-tests")  # not pytest's tmp_path: its 0700 parents keep the bed user out


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server (the bed's stand-in configuration) at PG_IP:5432; yields its IP."""
    user = cluster.BED_USER if cluster._ensure_bed_user() is not None else None
    d = ROOT / uuid.uuid4().hex[:10]
    d.mkdir(parents=True)
    ROOT.chmod(0o755)
    proc = servers.start(servers.prepare("postgresql", PG_IP, d, set(), user), d, user)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with _connect("postgres"):
                    break
            except psycopg.OperationalError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((d / "server.log").read_text()[-2000:]) from None
                time.sleep(0.2)
        yield PG_IP
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(d, ignore_errors=True)


def _connect(dbname: str) -> psycopg.Connection[Any]:
    return psycopg.connect(host=PG_IP, user="postgres", password=servers.POSTGRES_PASSWORD, dbname=dbname,
                           autocommit=True, connect_timeout=5)


@pytest.fixture
def pg(postgres_server: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection to a database of the test's own (dropped afterwards)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with _connect("postgres") as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    conn = _connect(name)
    try:
        yield conn
    finally:
        conn.close()
        with _connect("postgres") as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_db(tmp_path: Path) -> tuple[Path, SqliteSession]:
    """A database file and the operator's session on it, the sqlite3 CLI run as pod exec would run it."""
    if shutil.which("sqlite3") is None:
        raise RuntimeError("sqlite3 is missing: hack/install-engines.sh installs it")
    path = tmp_path / "app.db"
    return path, SqliteSession(local_exec, str(path))
