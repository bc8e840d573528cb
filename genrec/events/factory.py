"""Which event store a deployment uses: the one ``GENREC_EVENTS_URL`` names (apart from the
base class, so the backends import the base and nothing imports back)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from genrec.errors import ConfigError
from genrec.events.postgres import PostgresStore
from genrec.events.sqlite import SQLiteStore
from genrec.events.store import EventStore
from genrec.settings import Settings


def open_event_store(settings: Settings) -> EventStore:
    """The store ``settings.events_url`` names; embedded SQLite under home by default.
    Nothing is connected yet: the first use connects and creates or migrates the schema."""
    url = settings.events_url
    if not url:
        return SQLiteStore(settings.home / "events.sqlite3")
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        path = url.split("://", 1)[1] if "://" in url else ""
        if not path or path == "/":
            raise ConfigError("GENREC_EVENTS_URL sqlite:///PATH needs a file path")
        return SQLiteStore(Path(path[1:] if path.startswith("//") else path))
    if scheme in ("postgresql", "postgres"):
        return PostgresStore(url)
    raise ConfigError(
        f"GENREC_EVENTS_URL scheme {scheme!r} is not supported; use postgresql://... or "
        "sqlite:///PATH (or leave it unset for SQLite under GENREC_HOME)"
    )
