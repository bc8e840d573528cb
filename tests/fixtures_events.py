"""Session fixtures for the event store: a real PostgreSQL server the suite starts itself.

Debian's ``postgresql`` package provides ``initdb`` and ``pg_ctl`` (under
/usr/lib/postgresql/*/bin); the cluster lives in a temporary folder, listens on a free loopback
port and trusts local connections. As root it runs as the ``postgres`` user (PostgreSQL refuses
root). Where none of that is possible the PostgreSQL tests skip, saying why.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures_catalog import free_port


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if found:
        return Path(found[0]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class PostgresServer:
    bin: Path
    data: Path
    port: int
    log: Path
    runas: list[str]

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*self.runas, str(self.bin / "pg_ctl"), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1"
        done = self._run("-D", str(self.data), "-o", opts, "-l", str(self.log), "-w", "start")
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {done.stderr}\n{self.tail()}")

    def stop(self, mode: str = "fast") -> None:
        self._run("-D", str(self.data), "-m", mode, "-w", "stop")

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://genrec@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server for this session; skips (visibly) when it cannot run here."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed: the PostgreSQL event store is not tested")
    pg_bin = _pg_bin()
    if pg_bin is None:
        pytest.skip(
            "PostgreSQL is not installed (initdb not found; `apt-get install postgresql`, which "
            "`make test` does when it runs as root): the PostgreSQL event store is not tested"
        )
    runas: list[str] = []
    root = tempfile.mkdtemp(prefix="genrec-pg-")
    data, log = Path(root) / "data", Path(root) / "server.log"
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            shutil.rmtree(root, ignore_errors=True)
            pytest.skip("running as root without a `postgres` user: PostgreSQL cannot start")
        os.chown(root, user.pw_uid, user.pw_gid)
        runas = ["runuser", "-u", "postgres", "--"]
    init = subprocess.run(
        [
            *runas,
            str(pg_bin / "initdb"),
            "-D",
            str(data),
            "-U",
            "genrec",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-instructions",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"initdb failed, PostgreSQL tests skipped: {init.stderr.strip()[-500:]}")
    server = PostgresServer(pg_bin, data, free_port(), log, runas)
    try:
        server.start()
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"PostgreSQL did not start, its tests are skipped: {exc}")
    try:
        yield server
    finally:
        server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> str:
    """A fresh, empty database on the session's server."""
    return postgres.new_database()
