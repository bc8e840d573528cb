"""The event store on both backends (embedded SQLite, a real PostgreSQL server): event-by-event
checks, idempotence, the user-state rule, forgetting a user, schema creation and migration, and a
PostgreSQL server that goes away and comes back."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from genrec.errors import ConfigError, StoreUnavailable
from genrec.events.factory import open_event_store
from genrec.events.model import StoredEvent, checked
from genrec.events.postgres import PostgresStore
from genrec.events.sqlite import SQLiteStore
from genrec.events.store import EventStore
from genrec.settings import Settings

CATALOG = {str(i) for i in range(1, 200)}
NOW = 1_800_000_000.0


def known(ids: list[str]) -> set[str]:
    return set(ids) & CATALOG


def make(backend: str, where: Path | str, version: int | None = None) -> EventStore:
    kwargs = {} if version is None else {"target_version": version}
    if backend == "sqlite":
        return SQLiteStore(Path(where), **kwargs)
    return PostgresStore(str(where), **kwargs)


@pytest.fixture(params=["sqlite", "postgresql"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path | str]:
    if request.param == "sqlite":
        return "sqlite", tmp_path / "events.sqlite3"
    return "postgresql", request.getfixturevalue("postgres_url")


@pytest.fixture
def store(place: tuple[str, Path | str]) -> Iterator[EventStore]:
    with make(*place) as s:
        yield s


def ev(user: str, item: str, kind: str = "view", ts: float = NOW, **kw) -> StoredEvent:
    return StoredEvent(user, item, kind, ts, **kw)


def test_a_batch_is_checked_event_by_event() -> None:
    raw = [
        {"user_id": "u", "item_id": "1", "type": "view"},
        {"user_id": "u", "item_id": "99999", "type": "view"},  # not in the catalog
        {"user_id": "u", "item_id": "2", "type": "buy"},  # not a type
        {"user_id": "u", "item_id": "3", "type": "click", "timestamp": "last tuesday"},
        {"user_id": "u", "item_id": "4", "type": "rate"},  # a rating needs its value
        {"user_id": "u", "item_id": "5", "type": "view", "colour": "red"},
        "not an object",
        {"user_id": "x" * 257, "item_id": "6", "type": "view"},  # user IDs are bounded
        {"user_id": "u", "item_id": "7", "type": "rate", "value": 4, "timestamp": "2026-01-02"},
        {"user_id": "u", "item_id": "8", "type": "purchase", "timestamp": 1_700_000_000},
    ]
    good, bad = checked(raw, known, now=NOW)
    assert [i for i, _ in good] == [0, 8, 9]
    assert [(r.index, r.param) for r in bad] == [
        (1, "events[1].item_id"),
        (2, "events[2].type"),
        (3, "events[3].timestamp"),
        (4, "events[4].value"),
        (5, "events[5].colour"),
        (6, "events[6]"),
        (7, "events[7].user_id"),
    ]
    assert "not in the catalog" in bad[0].message and "'99999'" in bad[0].message
    assert "last tuesday" in bad[2].message
    assert good[0][1].timestamp == NOW  # no timestamp: when it is recorded
    assert good[1][1].value == 4.0 and good[2][1].timestamp == 1_700_000_000.0


def test_a_replayed_batch_adds_nothing(store: EventStore) -> None:
    batch = [ev("u1", str(i), event_id=f"e{i}") for i in range(1, 6)]
    assert store.record("c", batch) == (5, 0)
    assert store.record("c", batch) == (0, 5)
    # the same event_id twice in one batch, and events without IDs (never deduplicated)
    mixed = [ev("u1", "9", event_id="n1"), ev("u1", "9", event_id="n1"), ev("u1", "9")]
    assert store.record("c", mixed) == (2, 1)
    assert store.record("c", [ev("u1", "9")]) == (1, 0)
    # an event_id is the user's own: another user may use the same one
    assert store.record("c", [ev("u2", "1", event_id="e1")]) == (1, 0)
    assert store.count("c") == 9


def test_user_state_is_the_latest_distinct_items_oldest_first(store: EventStore) -> None:
    store.record(
        "c",
        [
            ev("u", "10", "purchase", ts=100),  # bought long ago: outside the window, consumed
            ev("u", "11", ts=300),
            ev("u", "12", ts=200),  # recorded out of order: time decides
            ev("u", "13", "rate", ts=400, value=5.0),
            ev("u", "11", "click", ts=500),  # seen again: it moves to its latest place
            ev("u", "14", ts=500),  # same time as the click: recorded later, so later
            ev("other", "15", "purchase", ts=600),  # another user
        ],
    )
    store.record("other-collection", [ev("u", "16", ts=700)])
    state = store.user_state("c", "u", 3)
    assert state.history == ("13", "11", "14")
    assert state.consumed == {"10", "13"}
    assert store.user_state("c", "u", 10).history == ("10", "12", "13", "11", "14")
    assert store.user_state("other-collection", "u", 10).history == ("16",)
    nobody = store.user_state("c", "nobody", 10)
    assert nobody.history == () and not nobody.known


def test_forgetting_a_user_deletes_their_events_everywhere_and_nothing_else(
    store: EventStore,
) -> None:
    store.record("c", [ev("gone", "1"), ev("gone", "2", "purchase"), ev("stays", "3")])
    store.record("d", [ev("gone", "4")])
    assert store.forget("gone") == 3
    assert not store.user_state("c", "gone", 10).known
    assert not store.user_state("d", "gone", 10).known
    assert store.user_state("c", "stays", 10).history == ("3",)
    assert store.forget("gone") == 0


def test_the_schema_is_created_and_migrated(place: tuple[str, Path | str]) -> None:
    with make(*place, version=1) as old:  # a store written by the first schema
        old.record("c", [ev("u", "1", "purchase"), ev("u", "2")])
        assert old.schema_version() == 1
        assert "genrec_events_consumed" not in _indexes(place)
    with make(*place) as new:  # opened by this genrec: migrated, data kept
        assert new.schema_version() == 2
        assert new.user_state("c", "u", 5).history == ("1", "2")
        assert {"genrec_events_latest", "genrec_events_consumed"} <= _indexes(place)
    with make(*place) as again:  # migrations run once
        assert again.schema_version() == 2 and again.count() == 2


def test_a_schema_newer_than_this_genrec_is_refused(place: tuple[str, Path | str]) -> None:
    with make(*place) as s:
        s.count()
    _execute(place, "UPDATE genrec_schema SET version = 99")
    with make(*place) as s, pytest.raises(ConfigError, match="version 99"):
        s.count()


def test_settings_choose_the_store(tmp_path: Path) -> None:
    default = open_event_store(Settings(home=tmp_path))
    assert default.backend == "sqlite" and default.location == str(tmp_path / "events.sqlite3")
    other = open_event_store(Settings(home=tmp_path, events_url=f"sqlite:///{tmp_path}/x.db"))
    assert other.location == str(tmp_path / "x.db")
    pg = open_event_store(Settings(home=tmp_path, events_url="postgresql://me:secret@db/ev"))
    assert pg.backend == "postgresql" and "secret" not in pg.location
    with pytest.raises(ConfigError, match="scheme"):
        open_event_store(Settings(home=tmp_path, events_url="mysql://db/ev"))


def test_postgres_going_away_gives_retryable_errors_then_recovers(postgres, postgres_url) -> None:
    with PostgresStore(postgres_url) as store:
        assert store.record("c", [ev("u", "1", event_id="a")]) == (1, 0)
        postgres.stop("immediate")
        try:
            for call in (
                lambda: store.record("c", [ev("u", "2", event_id="b")]),
                lambda: store.user_state("c", "u", 5),
                lambda: store.record("c", [ev("u", "2", event_id="b")]),
            ):
                with pytest.raises(StoreUnavailable) as info:
                    call()
                assert info.value.retryable and "unavailable" in info.value.message
        finally:
            postgres.start()
        # the dead pooled connections are thrown away; the next calls work again
        assert store.record("c", [ev("u", "2", event_id="b")]) == (1, 0)
        assert store.user_state("c", "u", 5).history == ("1", "2")


def _indexes(place: tuple[str, Path | str]) -> set[str]:
    backend, where = place
    if backend == "sqlite":
        with sqlite3.connect(where) as conn:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
    else:
        import psycopg

        with psycopg.connect(str(where)) as conn:
            rows = conn.execute("SELECT indexname FROM pg_indexes").fetchall()
    return {r[0] for r in rows}


def _execute(place: tuple[str, Path | str], sql: str) -> None:
    backend, where = place
    if backend == "sqlite":
        conn = sqlite3.connect(where)
        with conn:
            conn.execute(sql)
        conn.close()
    else:
        import psycopg

        with psycopg.connect(str(where), autocommit=True) as conn:
            conn.execute(sql)
