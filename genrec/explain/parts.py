"""Evidence as data: the parts of many candidates' scores at once (a :class:`Table`), merged
across retrievers, made into :class:`genrec.schema.Evidence` strongest first.

A *part* is a reason ``(kind, key)`` and its weight in one item's score, where ``key`` is an
item ID (``history``, ``user``) or the matched text (``query``); weights are shares of one
item's score, so each explainer normalises its positive terms to sum to 1 and a fusion (hybrid)
scales them by each member's share. A table holds them for all candidates as one array (reasons
x items): merging and normalising are a few numpy operations per retriever rather than a dict
per item, and an item's Evidence objects are built only when it is read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from genrec.data.item import Item
from genrec.schema import Evidence

MAX_EVIDENCE = 4  # entries per item: enough to say why, short enough to read
MIN_SHARE = 0.05  # smaller parts are noise in a reason (the strongest one is always kept)

# query keys: the matched words joined by SEP after TERMS (lexical), or DENSE and the query
TERMS, DENSE, SEP = "terms:", "dense:", "\x1f"

Key = tuple[str, str]  # (kind, key): key an item ID for history, the matched text for query


@dataclass(frozen=True)
class Table:
    """The parts of several items' scores: ``values[r, j]`` is reason ``keys[r]``'s share of
    item ``items[j]``'s score; a column sums to 1, or to 0 when nothing explains that item.
    Keys are distinct, and so are items."""

    keys: list[Key]
    items: list[str]
    values: np.ndarray  # (len(keys), len(items)), float64

    @classmethod
    def of_terms(cls, keys: Sequence[Key], items: Sequence[str], terms: np.ndarray) -> Table:
        """Each column's positive terms as shares summing to 1 (a negative term pushes an item
        down: it is not a reason it was picked). ``keys`` may repeat (their shares add up)."""
        positive = np.maximum(np.asarray(terms, dtype=np.float64), 0.0)
        totals = positive.sum(axis=0)
        shares = positive / np.where(totals > 0, totals, 1.0)
        if len(set(keys)) == len(keys):
            return cls(list(keys), list(items), shares)
        rows: dict[Key, int] = {}
        at = np.asarray([rows.setdefault(key, len(rows)) for key in keys], dtype=np.intp)
        merged = np.zeros((len(rows), shares.shape[1]))
        np.add.at(merged, at, shares)
        return cls(list(rows), list(items), merged)

    def explained(self) -> np.ndarray:
        """Per item: whether anything accounts for it."""
        return (self.values > 0).any(axis=0)


def empty() -> Table:
    """No reasons for any item."""
    return Table([], [], np.zeros((0, 0)))


def combine(items: Sequence[str], tables: Sequence[tuple[Table, np.ndarray | None]]) -> Table:
    """One table over ``items`` from several, each scaled per column (None: as it is); the same
    reason from several tables adds up. Every table's items are in ``items``."""
    rows: dict[Key, int] = {}
    at = [[rows.setdefault(key, len(rows)) for key in table.keys] for table, _ in tables]
    col = {item: j for j, item in enumerate(items)}
    out = np.zeros((len(rows), len(items)))
    for (table, scale), r in zip(tables, at, strict=True):
        if not r or not table.items:
            continue
        c = [col[item] for item in table.items]
        v = table.values if scale is None else table.values * scale[None, :]
        out[np.ix_(r, c)] += v  # a table's keys and items are distinct: each cell once
    return Table(list(rows), list(items), out)


def to_evidence(
    parts: Mapping[Key, float],
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

    def __init__(self, table: Table, ids: Sequence[str], items: Mapping[str, Item]):
        self._table, self._ids, self._items = table, dict.fromkeys(ids), items
        self._col = {item: j for j, item in enumerate(table.items)}
        self._built: dict[str, list[Evidence]] = {}

    def parts(self, item_id: str) -> dict[Key, float]:
        """The item's strongest reasons with a positive share, at least MAX_EVIDENCE of them
        where there are (all those tied with the last): what :func:`to_evidence` can use of a
        column that may hold the whole history."""
        j = self._col.get(item_id)
        if j is None:
            return {}
        column = self._table.values[:, j]
        if len(column) > MAX_EVIDENCE:
            floor = np.partition(column, len(column) - MAX_EVIDENCE)[len(column) - MAX_EVIDENCE]
            rows = np.flatnonzero((column >= floor) & (column > 0))
        else:
            rows = np.flatnonzero(column > 0)
        keys = self._table.keys
        return {keys[r]: float(column[r]) for r in rows.tolist()}

    def __getitem__(self, item_id: str) -> list[Evidence]:
        if item_id not in self._ids:
            raise KeyError(item_id)
        if item_id not in self._built:
            parts = self.parts(item_id)
            self._built[item_id] = to_evidence(parts, self._items) if parts else fallback()
        return self._built[item_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)


def fallback() -> list[Evidence]:
    """What an item with no evidence says: the retriever had nothing to go on for it."""
    return [Evidence(kind="fallback", weight=0.0)]


def by_id(items: Sequence[Item], ids: Sequence[str]) -> dict[str, Item]:
    """``items`` by their ``ids`` (given: a query has worked them out already)."""
    return dict(zip(ids, items, strict=True))
