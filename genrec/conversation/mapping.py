"""A conversation -> one RecommendRequest: what each user turn picks, rejects and names."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from genrec.conversation.answers import Listed, parse_answer
from genrec.conversation.mentions import CatalogLookup, display_title, items_named
from genrec.conversation.references import find_references
from genrec.data.item import Item
from genrec.errors import InvalidRequest
from genrec.schema import RecommendRequest


@dataclass(frozen=True)
class Message:
    role: str  # "system", "developer", "user" or "assistant"; others are ignored
    text: str


@dataclass(frozen=True)
class Conversation:
    """What a conversation is mapped from: its messages and the caller's request options."""

    messages: Sequence[Message]
    history: Sequence[str] = ()  # item IDs or titles before what the conversation adds
    exclude: Sequence[str] = ()
    filters: Sequence[dict] = ()  # each only narrows: ANDed with the conversation's own
    # Further RecommendRequest fields as they are (k, candidates, mode, template, user_id, ...).
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Mapped:
    request: RecommendRequest
    referenced: list[str]  # item IDs the last message pointed at in the previous answer


@dataclass
class Turn:
    """What one user message says about the catalog."""

    query: str
    referenced: list[str]  # picked from the previous answer (by ordinal or by title)
    negated: list[str]  # pointed at after a negation
    named: list[str]  # other catalog items named in the text
    recency: dict | None = None  # "newer"/"older" than the items it points at, as a filter


_NEWER = re.compile(r"\b(?:newer|more recent)\b", re.I)
_OLDER = re.compile(r"\b(?:older)\b", re.I)


def recency_filter(text: str, items: Iterable[Item]) -> dict | None:
    """ "more like the second one, but newer" -> {"year": {"$gt": <its year>}}: only for items
    with an integer `year` attribute, and only relative to items the message points at."""
    years = [y for it in items if isinstance(y := it.attributes.get("year"), int)]
    if not years:
        return None
    if _NEWER.search(text):
        return {"year": {"$gt": max(years)}}
    if _OLDER.search(text):
        return {"year": {"$lt": min(years)}}
    return None


def read_turn(text: str, previous: list[Item | None], catalog: CatalogLookup) -> Turn:
    refs = find_references(text, len(previous)) if previous else []
    pieces: list[str] = []
    cursor = 0
    referenced: list[str] = []
    negated: list[str] = []
    for ref in refs:
        items = [previous[p] for p in ref.positions if previous[p] is not None]
        pieces.append(text[cursor : ref.start])
        pieces.append(" and ".join(display_title(it) for it in items) or text[ref.start : ref.end])
        cursor = ref.end
        (negated if ref.negated else referenced).extend(it.id for it in items)
    query = "".join(pieces) + text[cursor:]
    found = [it for it in items_named(text, catalog) if it.id not in negated]
    named = [it.id for it in found]
    # Items of the previous answer named by title count as picks from it.
    listed = {it.id: it for it in previous if it is not None}
    referenced += [i for i in named if i in listed and i not in referenced]
    named = [i for i in named if i not in listed]
    pointed = [listed[i] for i in referenced if i in listed] + [
        it for it in found if it.id in named
    ]
    return Turn(query, referenced, negated, named, recency_filter(text, pointed))


def _resolve_listed(listed: list[Listed], catalog: CatalogLookup) -> list[Item | None]:
    by_id = {it.id: it for it in catalog.get([x.id for x in listed if x.id])}
    out: list[Item | None] = []
    for x in listed:
        item = by_id.get(x.id) if x.id else None
        if item is None and x.title:
            item = catalog.resolve(x.title)
        out.append(item)
    return out


def _dedup_keep_last(ids: list[str]) -> list[str]:
    """Keep each ID once, at its latest position: the history is oldest first."""
    seen: set[str] = set()
    out: list[str] = []
    for i in reversed(ids):
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out[::-1]


def _system_text(messages: Sequence[Message]) -> str | None:
    parts = [m.text.strip() for m in messages if m.role in ("system", "developer")]
    text = "\n\n".join(p for p in parts if p)
    return text or None


def map_conversation(conversation: Conversation, catalog: CatalogLookup) -> Mapped:
    messages = conversation.messages
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)

    history: list[str] = list(conversation.history)
    exclude: list[str] = list(conversation.exclude)
    previous: list[Item | None] = []  # the latest answer's items, in its order
    pending: list[str] = []  # items of answers the user has not picked from (yet)
    query: str | None = None
    referenced: list[str] = []
    recency: dict | None = None
    for i, msg in enumerate(messages):
        if msg.role == "assistant" and (last_user is None or i < last_user):
            listed = parse_answer(msg.text)
            if listed:
                previous = _resolve_listed(listed, catalog)
                pending += [it.id for it in previous if it is not None]
        elif msg.role == "user":
            turn = read_turn(msg.text, previous, catalog)
            exclude += turn.negated
            if turn.referenced or turn.negated:
                # Picking from an answer: the rest of it is not wanted again, nor as taste.
                exclude += [p for p in pending if p not in turn.referenced]
            else:
                history += pending  # an answer the conversation goes on from is taste
            pending = []
            history += turn.referenced + turn.named
            if i == last_user:
                query, referenced, recency = turn.query, turn.referenced, turn.recency
                break
    history += pending
    excluded = set(exclude)
    history = [i for i in _dedup_keep_last(history) if i not in excluded][-200:]
    parts = [f for f in (*conversation.filters, recency) if f]
    filters = None if not parts else parts[0] if len(parts) == 1 else {"$and": parts}
    request = _build(
        conversation,
        query=query,
        history=history,
        exclude=list(dict.fromkeys(exclude)),
        filters=filters,
        system=_system_text(messages),
    )
    return Mapped(request, referenced)


# The request fields a conversation fills from its messages; the rest keep the caller's names.
_FROM_MESSAGES = {"query", "system"}


def _build(conversation: Conversation, **fields: Any) -> RecommendRequest:
    try:
        return RecommendRequest(**conversation.options, **fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]]
        param = ("messages" if loc[0] in _FROM_MESSAGES else loc[0]) if loc else "messages"
        msg = err["msg"].removeprefix("Value error, ")
        if not loc:  # the request-level check: no query and no history
            msg = "send a user message (the query) or a `history` of items"
        raise InvalidRequest(f"{param}: {msg}", param=param) from None
