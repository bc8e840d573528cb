"""The retrieval seam: a request's need in, scored candidates out.

Every retriever honours the same contract: it never returns an item of the history or of
``exclude``, it honours ``where`` (a Chroma filter over item metadata), and it returns at most
``k`` candidates, best first, each with the retriever's own score (higher is better; scores of
different retrievers are on different scales, which is why fusion normalises them).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from genrec.data.item import Item


@dataclass(frozen=True)
class RetrievalQuery:
    text: str  # "" when the request has no query
    history: tuple[Item, ...]  # resolved once (CatalogIndex.resolve_history), oldest first
    k: int
    where: dict | None = None
    exclude: frozenset[str] = field(default_factory=frozenset)

    # Worked out once per query: every member and every explainer reads them.
    @functools.cached_property
    def history_ids(self) -> tuple[str, ...]:
        return tuple(item.id for item in self.history)

    @functools.cached_property
    def banned(self) -> frozenset[str]:
        """What may never be returned: the history and the exclusions."""
        return self.exclude | frozenset(self.history_ids)

    def widened(self, k: int) -> RetrievalQuery:
        """The same need asking for ``k`` candidates (a fusion's members' pool), sharing what
        was worked out once: the explanation reads the member's history positions again."""
        wide = dataclasses.replace(self, k=k)
        for name in ("history_ids", "banned", "_positions"):
            wide.__dict__[name] = getattr(self, name)  # cached_property's own slot
        return wide

    @functools.cached_property
    def _positions(self) -> dict[int, tuple[Mapping[str, int], list[int]]]:
        return {}

    def positions(self, position: Mapping[str, int]) -> list[int]:
        """The history as a model's item indices (``position``: item ID -> index; items it
        does not know left out), worked out once per model: its retrieval and its explanation
        both read it."""
        held = self._positions.get(id(position))
        if held is None or held[0] is not position:
            held = (position, [position[i] for i in self.history_ids if i in position])
            self._positions[id(position)] = held
        return held[1]


@dataclass(frozen=True)
class Candidate:
    item: Item
    score: float


@runtime_checkable
class Retriever(Protocol):
    name: str

    def retrieve(self, query: RetrievalQuery) -> list[Candidate]: ...


Ranked = list[tuple[str, float]]  # (item ID, score), best first


@runtime_checkable
class RankingRetriever(Retriever, Protocol):
    """A retriever that can also rank by ID alone: the same contract as ``retrieve`` but no item
    is read from the catalog, and an ID deleted from the catalog since the model was trained may
    be among them (whoever reads the items drops it). The hybrid fuses its members' lists this
    way and reads only the items it returns: at 300,000 items reading an item's metadata costs
    more than scoring it."""

    def ranked(self, query: RetrievalQuery) -> Ranked: ...
