"""Recording a batch: check each event, store the good ones in one transaction, say what
happened to each. Shared by ``Recommender.record``, ``POST /v1/events`` and ``genrec events
import``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from genrec.errors import InvalidRequest
from genrec.events.model import MAX_BATCH, RecordResult, checked
from genrec.events.store import EventStore

if TYPE_CHECKING:
    from genrec.index import CatalogIndex


def record_events(
    store: EventStore,
    index: CatalogIndex,
    events: Sequence[Any],
    *,
    now: float | None = None,
    max_batch: int = MAX_BATCH,
) -> RecordResult:
    """Validate each event on its own (an unknown item, a bad type or timestamp is rejected with
    its index and reason), store the others; returns once they are committed."""
    if isinstance(events, str | bytes | dict) or not isinstance(events, Sequence):
        raise InvalidRequest("events must be a list of event objects", param="events")
    if not events:
        raise InvalidRequest("events is empty; send at least one event", param="events")
    if len(events) > max_batch:
        raise InvalidRequest(
            f"{len(events)} events in one batch; send at most {max_batch} at a time",
            param="events",
        )

    def known(ids: list[str]) -> set[str]:
        return {item.id for item in index.get(ids)}

    good, bad = checked(events, known, now=now)
    accepted, duplicates = store.record(index.name, [e for _, e in good])
    return RecordResult(accepted=accepted, duplicates=duplicates, rejected=bad)
