"""The event store as an interaction log: what ``genrec train --events`` learns from, so the loop
record -> train -> serve runs without exporting files. Every event type is an interaction (in
time order); a ``rate`` event carries its value as the rating."""

from __future__ import annotations

from genrec.data.interactions import Interaction, LogRead
from genrec.errors import CatalogError
from genrec.events.factory import open_event_store
from genrec.settings import Settings


def read_store(settings: Settings, collection: str) -> LogRead:
    with open_event_store(settings) as store:
        read = LogRead(source=f"events:{store.location}#{collection}")
        read.interactions = [
            Interaction(e.user_id, e.item_id, e.timestamp, e.value if e.type == "rate" else None)
            for e in store.scan(collection)
        ]
    if not read.interactions:
        raise CatalogError(
            f"the event store {store.location} has no events for collection {collection!r}; "
            "record some (POST /v1/events, `genrec events import FILE`) first",
            param="events",
        )
    return read
