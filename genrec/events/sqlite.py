"""The embedded event store: one SQLite file (WAL) under GENREC_HOME.

WAL lets readers run beside the one writer, across threads and processes (several genrec
processes on one machine may share the file). ``synchronous=FULL``: a commit is on disk before
:meth:`record` returns, so an acknowledged batch survives a killed process or a lost machine.
One connection per thread; writes take the lock at BEGIN (IMMEDIATE) and wait up to
``busy_timeout`` for another writer.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from genrec.errors import StoreUnavailable
from genrec.events.model import StoredEvent
from genrec.events.store import (
    MAX_CONSUMED,
    SCHEMA_VERSION,
    SHARED_STEPS,
    EventStore,
    migrate,
    statements,
)

BUSY_TIMEOUT_MS = 10_000

# Each step brings the schema from the version before it; a step never changes once released.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE genrec_events (
            seq INTEGER PRIMARY KEY,
            collection TEXT NOT NULL,
            user_id TEXT NOT NULL,
            item_id TEXT NOT NULL,
            type TEXT NOT NULL,
            value REAL,
            ts REAL NOT NULL,
            event_id TEXT,
            recorded_at REAL NOT NULL
        )""",
        *SHARED_STEPS[1],
    ),
    2: SHARED_STEPS[2],
}
assert max(MIGRATIONS) == SCHEMA_VERSION

SQL = statements("?")
_INSERT = (
    "INSERT INTO genrec_events (collection, user_id, item_id, type, value, ts, event_id, "
    "recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


class SQLiteStore(EventStore):
    backend = "sqlite"

    def __init__(self, path: Path, *, target_version: int = SCHEMA_VERSION) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self._target = target_version  # lower only in tests of the migrations
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._migrated = False

    # -- connections ----------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False, timeout=10
                )
                conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")
            except (sqlite3.Error, OSError) as exc:
                raise StoreUnavailable(
                    f"the event store {self.path} cannot be opened: {exc}", code="store_unavailable"
                ) from exc
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        if not self._migrated:
            with self._errors():
                self._migrate(conn)
            self._migrated = True
        return conn

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:  # locked past the timeout, disk full, I/O
            raise StoreUnavailable(
                f"the event store {self.path} failed: {exc}; retry", code="store_unavailable"
            ) from exc

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection, mode: str = "") -> Iterator[None]:
        with self._errors():
            conn.execute(f"BEGIN {mode}")
            try:
                yield
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _migrate(self, conn: sqlite3.Connection) -> None:
        with self._transaction(conn, "IMMEDIATE"):
            migrate(conn, MIGRATIONS, self._target, where=str(self.path), mark="?")

    # -- the store ------------------------------------------------------------------------------

    def record(self, collection: str, events: Sequence[StoredEvent]) -> tuple[int, int]:
        if not events:
            return 0, 0
        conn = self._conn()
        now = time.time()
        rows = [
            (collection, e.user_id, e.item_id, e.type, e.value, e.timestamp, e.event_id, now)
            for e in events
        ]
        with self._transaction(conn, "IMMEDIATE"):
            cur = conn.executemany(_INSERT.replace("INSERT", "INSERT OR IGNORE", 1), rows)
            accepted = cur.rowcount
        return accepted, len(rows) - accepted

    def latest(self, collection: str, user_id: str, limit: int) -> tuple[list[str], set[str]]:
        conn = self._conn()
        with self._transaction(conn):  # one snapshot for both reads
            recent = conn.execute(SQL["recent"], (user_id, collection, limit)).fetchall()
            consumed = conn.execute(SQL["consumed"], (user_id, collection, MAX_CONSUMED)).fetchall()
        return [r[0] for r in recent], {r[0] for r in consumed}

    def forget(self, user_id: str) -> int:
        conn = self._conn()
        with self._transaction(conn, "IMMEDIATE"):
            return conn.execute(SQL["forget"], (user_id,)).rowcount

    def count(self, collection: str | None = None) -> int:
        conn = self._conn()
        with self._errors():
            if collection is None:
                return conn.execute(SQL["count"]).fetchone()[0]
            return conn.execute(SQL["count_in"], (collection,)).fetchone()[0]

    def scan(self, collection: str) -> Iterator[StoredEvent]:
        conn = self._conn()
        with self._errors():
            cur = conn.execute(SQL["scan"], (collection,))
            for row in cur:
                yield StoredEvent(*row)

    def bulk_load(self, collection: str, events: Iterable[StoredEvent]) -> int:
        conn = self._conn()
        now = time.time()
        rows = (
            (collection, e.user_id, e.item_id, e.type, e.value, e.timestamp, e.event_id, now)
            for e in events
        )
        with self._transaction(conn, "IMMEDIATE"):
            return conn.executemany(_INSERT, rows).rowcount

    def schema_version(self) -> int:
        conn = self._conn()
        with self._errors():
            return conn.execute("SELECT version FROM genrec_schema").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass
        self._local = threading.local()
        self._migrated = False
