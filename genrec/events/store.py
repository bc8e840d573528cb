"""The event store: where recorded events live, and the one place user state is read.

Two backends behind one interface: embedded SQLite under ``GENREC_HOME`` (the default; WAL, a
batch is acknowledged only after its transaction committed with ``synchronous=FULL``), and
PostgreSQL through ``GENREC_EVENTS_URL`` for many genrec processes behind a load balancer. Both
create their schema on first use and migrate an older one (``genrec_schema`` holds its version;
each migration runs once, in a transaction, under a lock, so processes starting together are
safe). A store that cannot be reached raises :class:`genrec.errors.StoreUnavailable` (HTTP 503,
retryable): retry the batch with the same ``event_id``s and nothing is counted twice.

User state (:meth:`EventStore.user_state`), the rule: the user's latest ``n`` distinct items
(any event type, the latest event of each item counts; looked for among the user's latest ``4n``
events), oldest first; and every item the user bought or rated, ever (never recommended again
unless a request asks). Reads and writes are scoped by collection: item IDs belong to a catalog.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from genrec.errors import ConfigError
from genrec.events.model import CONSUMED_TYPES, StoredEvent, UserState

SCAN_FACTOR = 4  # the latest n distinct items are looked for among the latest 4n events
MAX_CONSUMED = 50_000  # as many as a request may exclude (genrec.schema.MAX_EXCLUDE)
SCHEMA_VERSION = 2


class EventStore(ABC):
    backend: str  # "sqlite" or "postgresql"
    location: str  # where it is, without credentials (for logs and /health)

    @abstractmethod
    def record(self, collection: str, events: Sequence[StoredEvent]) -> tuple[int, int]:
        """Store the events in ONE transaction; return (accepted, duplicates) after it committed.
        A duplicate is an event whose (user, event_id) is already stored, or twice in the batch."""

    @abstractmethod
    def latest(self, collection: str, user_id: str, limit: int) -> tuple[list[str], set[str]]:
        """(the item IDs of the user's latest ``limit`` events, newest first; the items the user
        bought or rated), read in one snapshot."""

    @abstractmethod
    def forget(self, user_id: str) -> int:
        """Delete every event of the user, in every collection; the number deleted."""

    @abstractmethod
    def count(self, collection: str | None = None) -> int: ...

    @abstractmethod
    def scan(self, collection: str) -> Iterator[StoredEvent]:
        """Every event of the collection, oldest first (export, training)."""

    @abstractmethod
    def bulk_load(self, collection: str, events: Iterable[StoredEvent]) -> int:
        """Append many events fast, without duplicate checks (benchmarks, imports of logs
        without event IDs are still :meth:`record`)."""

    @abstractmethod
    def schema_version(self) -> int: ...

    @abstractmethod
    def close(self) -> None: ...

    def user_state(self, collection: str, user_id: str, n: int) -> UserState:
        """The user's state by the rule in the module docstring."""
        recent, consumed = self.latest(collection, user_id, SCAN_FACTOR * n)
        history: list[str] = []
        seen: set[str] = set()
        for item in recent:  # newest first
            if item not in seen:
                seen.add(item)
                history.append(item)
                if len(history) == n:
                    break
        return UserState(user_id, tuple(reversed(history)), frozenset(consumed))

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


CONSUMED_SQL = "(" + ", ".join(f"'{t}'" for t in CONSUMED_TYPES) + ")"
# The schema steps both backends share beside their own CREATE TABLE (column types differ)
SHARED_STEPS: dict[int, tuple[str, ...]] = {
    1: (
        # idempotence: one (user, event_id) per collection; NULL event_ids never collide
        "CREATE UNIQUE INDEX genrec_events_id ON genrec_events (user_id, collection, event_id)",
        # "the latest N events of a user", and forgetting a user
        "CREATE INDEX genrec_events_latest ON genrec_events (user_id, collection, ts, seq)",
    ),
    2: (
        # what the user bought or rated, without reading the rest of a long history
        "CREATE INDEX genrec_events_consumed ON genrec_events (user_id, collection, item_id) "
        f"WHERE type IN {CONSUMED_SQL}",
    ),
}

# The reads both backends make, with ``{p}`` for the driver's placeholder (statements(mark))
_STATEMENTS = {
    "recent": "SELECT item_id FROM genrec_events WHERE user_id = {p} AND collection = {p} "
    "ORDER BY ts DESC, seq DESC LIMIT {p}",
    "consumed": "SELECT DISTINCT item_id FROM genrec_events WHERE user_id = {p} AND "
    f"collection = {{p}} AND type IN {CONSUMED_SQL} LIMIT {{p}}",
    "forget": "DELETE FROM genrec_events WHERE user_id = {p}",
    "count": "SELECT count(*) FROM genrec_events",
    "count_in": "SELECT count(*) FROM genrec_events WHERE collection = {p}",
    "scan": "SELECT user_id, item_id, type, ts, value, event_id FROM genrec_events "
    "WHERE collection = {p} ORDER BY ts, seq",
}


def statements(mark: str) -> dict[str, str]:
    """The shared statements with the driver's placeholder (``?`` or ``%s``)."""
    return {name: sql.format(p=mark) for name, sql in _STATEMENTS.items()}


def redacted(url: str) -> str:
    """A URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def migrate(
    conn: Any, migrations: Mapping[int, Sequence[str]], target: int, *, where: str, mark: str
) -> None:
    """Bring the schema to ``target``, inside the caller's transaction and lock (both backends):
    ``genrec_schema`` holds the version, each step runs once, a newer schema than this genrec
    knows is refused. ``mark``: the driver's placeholder (``?`` or ``%s``)."""
    conn.execute("CREATE TABLE IF NOT EXISTS genrec_schema (version INTEGER NOT NULL)")
    row = conn.execute("SELECT version FROM genrec_schema").fetchone()
    current = row[0] if row else 0
    if current > SCHEMA_VERSION:
        raise ConfigError(
            f"the event store {where} has schema version {current}, newer than this genrec "
            f"knows ({SCHEMA_VERSION}); upgrade genrec"
        )
    for version in range(current + 1, target + 1):
        for statement in migrations[version]:
            conn.execute(statement)
    sql = (
        "INSERT INTO genrec_schema VALUES ({})"
        if row is None
        else ("UPDATE genrec_schema SET version = {}")
    )
    conn.execute(sql.format(mark), (max(current, target),))
