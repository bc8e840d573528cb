"""Events in, user state out: the real-time personalisation loop.

``record`` checks a batch event by event against the catalog and stores the good ones (see
:mod:`genrec.events.store` for the stores and the user-state rule); the Recommender reads a
user's state for every request with ``user_id``; ``genrec train --events`` learns from the store.
"""

from genrec.events.factory import open_event_store
from genrec.events.model import (
    EVENT_TYPES,
    MAX_BATCH,
    Event,
    RecordResult,
    Rejected,
    StoredEvent,
    UserState,
)
from genrec.events.recording import record_events
from genrec.events.store import EventStore

__all__ = [
    "EVENT_TYPES",
    "MAX_BATCH",
    "Event",
    "EventStore",
    "RecordResult",
    "Rejected",
    "StoredEvent",
    "UserState",
    "open_event_store",
    "record_events",
]
