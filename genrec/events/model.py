"""What an event is, what recording a batch answers, and what a user's state is.

An event says that a user did something with a catalog item: ``view``, ``click``, ``purchase``
or ``rate`` (with ``value``, the rating). Each event of a batch is checked on its own: a bad one
is rejected with its index and the reason, the others are stored.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from genrec.data.interactions import parse_timestamp
from genrec.schema import UNICODE

EventType = Literal["view", "click", "purchase", "rate"]
EVENT_TYPES: tuple[str, ...] = ("view", "click", "purchase", "rate")
# What the user has had: never recommended again unless a request asks for it.
CONSUMED_TYPES: tuple[str, ...] = ("purchase", "rate")
MAX_BATCH = 1000  # events one call may carry (the body size limit bounds it too)
MAX_USER_ID = 256  # characters of an opaque user ID

UserId = Annotated[StrictStr, Field(min_length=1, max_length=MAX_USER_ID), UNICODE]
ItemId = Annotated[StrictStr, Field(min_length=1, max_length=512), UNICODE]
EventId = Annotated[StrictStr, Field(min_length=1, max_length=128), UNICODE]


class Event(BaseModel):
    """One event as a caller sends it. ``timestamp``: Unix seconds or ISO 8601 (default: when
    it is recorded); ``event_id``: the caller's ID, so a replayed event is stored once."""

    model_config = ConfigDict(extra="forbid")

    user_id: UserId
    item_id: ItemId
    type: EventType
    value: StrictFloat | StrictInt | None = None
    timestamp: StrictFloat | StrictInt | StrictStr | None = None
    event_id: EventId | None = None


@dataclass(frozen=True)
class StoredEvent:
    """An event as the store keeps it (timestamps as Unix seconds)."""

    user_id: str
    item_id: str
    type: str
    timestamp: float
    value: float | None = None
    event_id: str | None = None


@dataclass
class Rejected:
    index: int  # the event's position in the batch
    param: str  # e.g. "events[3].timestamp"
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "param": self.param, "message": self.message}


@dataclass
class RecordResult:
    """What recording a batch did: stored (``accepted``), already stored (``duplicates``, the
    same user and event_id), and refused with the reasons."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejected] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "object": "events.recorded",
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": len(self.rejected),
            "errors": [r.as_dict() for r in self.rejected],
        }


@dataclass(frozen=True)
class UserState:
    """What a request for this user reads from the store."""

    user_id: str
    history: tuple[str, ...]  # the latest distinct items, oldest first
    consumed: frozenset[str]  # items bought or rated (ever)

    @property
    def known(self) -> bool:
        return bool(self.history or self.consumed)


def parse_time(value: object, *, now: float) -> float:
    """Unix seconds from a number or an ISO 8601 string (None: ``now``); ValueError otherwise."""
    if value is None:
        return now
    seconds = parse_timestamp(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"bad timestamp {value!r} (a time after 1970 is needed)")
    if seconds > now + 86_400:
        raise ValueError(f"timestamp {value!r} is more than a day in the future")
    return seconds


def checked(
    raw: Sequence[Any],
    known: Callable[[list[str]], set[str]],
    *,
    now: float | None = None,
    param: str = "events",
) -> tuple[list[tuple[int, StoredEvent]], list[Rejected]]:
    """Each raw event validated on its own: (index, event) pairs to store, and the rejected.
    ``known(item_ids)`` says which of those items the catalog has (one call per batch)."""
    now = time.time() if now is None else now
    parsed: list[tuple[int, StoredEvent]] = []
    bad: list[Rejected] = []
    for i, doc in enumerate(raw):
        try:
            parsed.append((i, _one(doc, now)))
        except _Bad as exc:
            suffix = f".{exc.field}" if exc.field else ""
            bad.append(Rejected(i, f"{param}[{i}]{suffix}", exc.message))
    have = known(sorted({e.item_id for _, e in parsed})) if parsed else set()
    good: list[tuple[int, StoredEvent]] = []
    for i, event in parsed:
        if event.item_id in have:
            good.append((i, event))
        else:
            message = f"item {event.item_id!r} is not in the catalog"
            bad.append(Rejected(i, f"{param}[{i}].item_id", message))
    bad.sort(key=lambda r: r.index)
    return good, bad


class _Bad(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field, self.message = field, message


def _one(doc: object, now: float) -> StoredEvent:
    if isinstance(doc, Event):
        event = doc
    elif isinstance(doc, dict):
        try:
            event = Event.model_validate(doc)
        except ValidationError as exc:
            err = exc.errors()[0]
            field_ = ".".join(str(p) for p in err["loc"][:1])
            msg = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown field; an event has " + ", ".join(Event.model_fields)
            elif err["type"] == "missing":
                msg = "is required"
            raise _Bad(field_, msg) from None
    else:
        raise _Bad("", "an event must be a JSON object")
    value = None if event.value is None else float(event.value)
    if value is not None and not math.isfinite(value):
        raise _Bad("value", "must be a finite number")
    if event.type == "rate" and value is None:
        raise _Bad("value", "a rate event needs a value (the rating)")
    try:
        ts = parse_time(event.timestamp, now=now)
    except ValueError as exc:
        raise _Bad("timestamp", str(exc)) from None
    return StoredEvent(
        user_id=event.user_id,
        item_id=event.item_id,
        type=event.type,
        timestamp=ts,
        value=value,
        event_id=event.event_id,
    )
