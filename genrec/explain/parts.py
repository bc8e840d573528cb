"""Evidence as data: per-candidate parts (an additive share of the item's score) made into
:class:`genrec.schema.Evidence`, merged across retrievers, strongest first.

A *part* is ``(kind, key) -> weight`` where ``key`` is an item ID (``history``, ``user``) or the
matched text (``query``); weights are shares of one item's score, so each explainer normalises
its positive terms to sum to 1 and a fusion (hybrid) scales them by each member's share.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np

from genrec.data.item import Item
from genrec.schema import Evidence

MAX_EVIDENCE = 4  # entries per item: enough to say why, short enough to read
KEEP = 2 * MAX_EVIDENCE  # parts kept per retriever and item before they are merged
MIN_SHARE = 0.05  # smaller parts are noise in a reason (the strongest one is always kept)

# query keys: the matched words joined by SEP after TERMS (lexical), or DENSE and the query
TERMS, DENSE, SEP = "terms:", "dense:", "\x1f"

# (kind, key) -> weight; key: an item ID for history, the matched text for query, "" otherwise
Parts = dict[tuple[str, str], float]


def shares(terms: Mapping[tuple[str, str], float]) -> Parts:
    """The positive terms as shares summing to 1 (negative terms push an item down: they are
    not a reason it was picked)."""
    positive = {key: float(v) for key, v in terms.items() if v > 0}
    total = sum(positive.values())
    return {key: v / total for key, v in positive.items()} if total > 0 else {}


def column_shares(names: Sequence[str], terms: np.ndarray, kind: str = "history") -> list[Parts]:
    """:func:`shares` of each column of ``terms`` (one row per name, one column per item),
    keeping only each column's ``KEEP`` largest: the rest cannot reach a reason, and a history
    of 200 items makes 200 parts otherwise."""
    positive = np.maximum(terms, 0.0)
    totals = positive.sum(axis=0)
    if len(names) > KEEP:
        top = np.argpartition(-positive, KEEP - 1, axis=0)[:KEEP]
        values = np.take_along_axis(positive, top, axis=0)
    else:
        top = np.broadcast_to(np.arange(len(names))[:, None], positive.shape)
        values = positive
    values = (values / np.where(totals > 0, totals, 1.0)).T.tolist()
    return [
        {(kind, names[i]): v for i, v in zip(rows, vals, strict=True) if v > 0}
        for rows, vals in zip(top.T.tolist(), values, strict=True)
    ]


def add(into: Parts, parts: Mapping[tuple[str, str], float], scale: float = 1.0) -> None:
    for key, v in parts.items():
        into[key] = into.get(key, 0.0) + scale * v


def to_evidence(
    parts: Parts,
    items: Mapping[str, Item],
    *,
    source: str | None = None,
) -> list[Evidence]:
    """The strongest parts (at most MAX_EVIDENCE, each at least MIN_SHARE but the first) as
    Evidence, strongest first; ties by kind then key, so the order is stable."""
    ranked = sorted(parts.items(), key=lambda kv: (-kv[1], kv[0]))
    out: list[Evidence] = []
    for (kind, key), weight in ranked[:MAX_EVIDENCE]:
        if out and weight < MIN_SHARE:
            break
        ev: dict = {"kind": kind, "weight": round(weight, 4)}
        if source is not None:
            ev["source"] = source
        if kind in ("history", "user"):
            item = items.get(key)
            ev.update(item_id=key, title=item.title if item else None)
        elif kind == "query":
            if key.startswith(TERMS):
                words = key[len(TERMS) :].split(SEP)
                ev.update(text=", ".join(words), terms=words)
            else:
                ev.update(text=key.removeprefix(DENSE))
        out.append(_built(ev))
    return out


_DEFAULTS = {name: f.default for name, f in Evidence.model_fields.items() if not f.is_required()}


def _built(fields: dict) -> Evidence:
    """An Evidence from our own numbers, unvalidated: what ``model_construct`` makes, at a tenth
    of its cost (it looks every default up again; a request builds ~60 of these)."""
    ev = Evidence.__new__(Evidence)
    object.__setattr__(ev, "__dict__", {**_DEFAULTS, **fields})
    object.__setattr__(ev, "__pydantic_fields_set__", set(fields))
    object.__setattr__(ev, "__pydantic_extra__", None)
    object.__setattr__(ev, "__pydantic_private__", None)
    return ev


class Evidences(Mapping[str, list[Evidence]]):
    """item ID -> its evidence (:func:`to_evidence`, or ``fallback``), for every candidate, made
    into Evidence objects when first read: a request reads those of the k items it serves, and
    building them costs as much as finding the parts of all n candidates."""

    def __init__(self, parts: Mapping[str, Parts], ids: Sequence[str], items: Mapping[str, Item]):
        self._parts, self._ids, self._items = parts, dict.fromkeys(ids), items
        self._built: dict[str, list[Evidence]] = {}

    def __getitem__(self, item_id: str) -> list[Evidence]:
        if item_id not in self._ids:
            raise KeyError(item_id)
        if item_id not in self._built:
            parts = self._parts.get(item_id)
            self._built[item_id] = to_evidence(parts, self._items) if parts else fallback()
        return self._built[item_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


def fallback() -> list[Evidence]:
    """What an item with no evidence says: the retriever had nothing to go on for it."""
    return [Evidence(kind="fallback", weight=0.0)]


def by_id(items: Iterable[Item]) -> dict[str, Item]:
    return {it.id: it for it in items}
