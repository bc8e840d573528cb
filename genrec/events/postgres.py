"""The server event store: PostgreSQL (psycopg 3), for many genrec processes sharing events.

A small pool of connections; a connection that fails is thrown away and the call raises
:class:`genrec.errors.StoreUnavailable` (HTTP 503, retryable), so a database that goes away gives
503s and a database that comes back is used again by the next call (a read retries once at once
on a fresh connection: the pooled ones may all be dead after a restart). A write is never retried
here, since only the caller knows, by its ``event_id``s, that a retry is safe; instead a pooled
connection is checked (``SELECT 1``) before it carries a write.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from genrec.errors import StoreUnavailable, dependency
from genrec.events.model import StoredEvent
from genrec.events.store import (
    MAX_CONSUMED,
    SCHEMA_VERSION,
    SHARED_STEPS,
    EventStore,
    migrate,
    redacted,
    statements,
)

T = TypeVar("T")
POOL_SIZE = 8  # idle connections kept
CONNECT_TIMEOUT_S = 3
STATEMENT_TIMEOUT_MS = 15_000
MIGRATION_LOCK = 0x67656E726563  # pg_advisory_xact_lock key: "genrec"

MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE genrec_events (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            collection TEXT NOT NULL,
            user_id TEXT NOT NULL,
            item_id TEXT NOT NULL,
            type TEXT NOT NULL,
            value DOUBLE PRECISION,
            ts DOUBLE PRECISION NOT NULL,
            event_id TEXT,
            recorded_at DOUBLE PRECISION NOT NULL
        )""",
        *SHARED_STEPS[1],
    ),
    2: SHARED_STEPS[2],
}
assert max(MIGRATIONS) == SCHEMA_VERSION

SQL = statements("%s")
_COLUMNS = "collection, user_id, item_id, type, value, ts, event_id, recorded_at"
_INSERT = (
    f"INSERT INTO genrec_events ({_COLUMNS}) "
    "SELECT %s, u.user_id, u.item_id, u.type, u.value, u.ts, u.event_id, %s FROM unnest("
    "%s::text[], %s::text[], %s::text[], %s::float8[], %s::float8[], %s::text[]) "
    "AS u(user_id, item_id, type, value, ts, event_id) "
    "ON CONFLICT (user_id, collection, event_id) DO NOTHING RETURNING 1"
)


class PostgresStore(EventStore):
    backend = "postgresql"

    def __init__(self, url: str, *, target_version: int = SCHEMA_VERSION) -> None:
        self._psycopg: Any = dependency(
            "psycopg",
            "GENREC_EVENTS_URL names PostgreSQL but psycopg is not installed "
            "(pip install 'psycopg[binary]')",
        )
        self.url = url
        self.location = redacted(url)
        self._target = target_version
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._migrated = False

    # -- connections ----------------------------------------------------------------------------

    def _connect(self) -> Any:
        psycopg = self._psycopg
        try:
            conn = psycopg.connect(
                self.url,
                autocommit=True,  # transactions are explicit: conn.transaction()
                connect_timeout=CONNECT_TIMEOUT_S,
                options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
            )
        except psycopg.Error as exc:
            raise self._unavailable(exc) from exc
        if not self._migrated:
            try:
                self._migrate(conn)
            except BaseException:
                conn.close()
                raise
            self._migrated = True
        return conn

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return StoreUnavailable(
            f"the event store (PostgreSQL at {self.location}) is unavailable: {first}; retry",
            code="store_unavailable",
        )

    def _run(self, work: Callable[[Any], T], *, retry: bool) -> T:
        """``work(conn)`` on a pooled connection; a failed connection is closed, never reused."""
        psycopg = self._psycopg
        for attempt in (0, 1):
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            pooled = conn is not None
            if conn is None:
                conn = self._connect()
            elif not retry and not self._alive(conn):
                # a write is never retried, so a pooled connection is checked before one: after
                # the database restarted, the first batch then goes to a fresh connection
                self._drain()
                conn = self._connect()
                pooled = False
            try:
                result = work(conn)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                conn.close()
                if pooled:  # the others were opened before the same failure, likely dead too
                    self._drain()
                if retry and pooled and attempt == 0:
                    continue
                raise self._unavailable(exc) from exc
            except BaseException:
                conn.close()
                raise
            with self._lock:
                if len(self._idle) < POOL_SIZE and not conn.closed:
                    self._idle.append(conn)
                    conn = None
            if conn is not None:
                conn.close()
            return result
        raise AssertionError("unreachable")

    def _alive(self, conn: Any) -> bool:
        try:
            conn.execute("SELECT 1")
            return True
        except (self._psycopg.OperationalError, self._psycopg.InterfaceError):
            conn.close()
            return False

    def _drain(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _migrate(self, conn: Any) -> None:
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
                where = f"at {self.location}"
                migrate(conn, MIGRATIONS, self._target, where=where, mark="%s")
        except (self._psycopg.OperationalError, self._psycopg.InterfaceError) as exc:
            raise self._unavailable(exc) from exc

    # -- the store ------------------------------------------------------------------------------

    def record(self, collection: str, events: Sequence[StoredEvent]) -> tuple[int, int]:
        if not events:
            return 0, 0
        columns = [
            [e.user_id for e in events],
            [e.item_id for e in events],
            [e.type for e in events],
            [e.value for e in events],
            [e.timestamp for e in events],
            [e.event_id for e in events],
        ]

        def work(conn: Any) -> int:
            with conn.transaction():
                cur = conn.execute(_INSERT, (collection, time.time(), *columns))
                return len(cur.fetchall())

        accepted = self._run(work, retry=False)
        return accepted, len(events) - accepted

    def latest(self, collection: str, user_id: str, limit: int) -> tuple[list[str], set[str]]:
        def work(conn: Any) -> tuple[list[str], set[str]]:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                recent = conn.execute(SQL["recent"], (user_id, collection, limit)).fetchall()
                args = (user_id, collection, MAX_CONSUMED)
                consumed = conn.execute(SQL["consumed"], args).fetchall()
            return [r[0] for r in recent], {r[0] for r in consumed}

        return self._run(work, retry=True)

    def forget(self, user_id: str) -> int:
        def work(conn: Any) -> int:
            with conn.transaction():
                return conn.execute(SQL["forget"], (user_id,)).rowcount

        return self._run(work, retry=True)  # deleting twice deletes the same

    def count(self, collection: str | None = None) -> int:
        def work(conn: Any) -> int:
            with conn.transaction():
                if collection is None:
                    return conn.execute(SQL["count"]).fetchone()[0]
                return conn.execute(SQL["count_in"], (collection,)).fetchone()[0]

        return self._run(work, retry=True)

    def scan(self, collection: str) -> Iterator[StoredEvent]:
        conn = self._connect()
        try:
            with conn.transaction(), conn.cursor(name="genrec_scan") as cur:
                cur.execute(SQL["scan"], (collection,))
                for row in cur:
                    yield StoredEvent(*row)
        except (self._psycopg.OperationalError, self._psycopg.InterfaceError) as exc:
            raise self._unavailable(exc) from exc
        finally:
            conn.close()

    def bulk_load(self, collection: str, events: Iterable[StoredEvent]) -> int:
        def work(conn: Any) -> int:
            n = 0
            now = time.time()
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy(f"COPY genrec_events ({_COLUMNS}) FROM STDIN") as copy:
                    for e in events:
                        copy.write_row(
                            (
                                collection,
                                e.user_id,
                                e.item_id,
                                e.type,
                                e.value,
                                e.timestamp,
                                e.event_id,
                                now,
                            )
                        )
                        n += 1
            return n

        return self._run(work, retry=False)

    def schema_version(self) -> int:
        def work(conn: Any) -> int:
            with conn.transaction():
                return conn.execute("SELECT version FROM genrec_schema").fetchone()[0]

        return self._run(work, retry=True)

    def close(self) -> None:
        self._drain()
