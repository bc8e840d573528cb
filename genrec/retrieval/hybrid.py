"""hybrid: content and learned retrievers fused by a weighted sum of normalised scores.

Each member retrieves its top ``pool`` candidates; its scores are min-max normalised within that
list (each member's scale is its own: cosine similarities, co-occurrence sums, dot products), an
item a member did not return counts 0 for it, and the fused score is the weighted sum. A weighted
sum rather than reciprocal-rank fusion because the weights are chosen on validation data
(``genrec train``): a sum keeps how far ahead a member's top items are, which ranks alone lose,
and the search over weights finds when a member should count little or nothing.

Members rank by ID (:class:`RankingRetriever`) where they can: of the hundreds of IDs the members
return only the fused top ``k`` are read from the catalog.

A request with a query text gives the content member at least ``TEXT_WEIGHT`` of the total, so
a text still steers a user with a long history. The content member's weight is never zero, so
items nobody has interacted with yet stay reachable.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from genrec.data.item import Item
from genrec.index import CatalogIndex
from genrec.retrieval.base import Candidate, RankingRetriever, RetrievalQuery, Retriever

TEXT_WEIGHT = 0.5
MIN_POOL = 100


Scored = list[tuple[str, float]]  # (item ID, score), best first


def normalised(scored: Scored) -> dict[str, float]:
    if not scored:
        return {}
    values = [s for _, s in scored]
    lo, hi = min(values), max(values)
    span = hi - lo
    if span <= 0:
        return {item_id: 1.0 for item_id, _ in scored}
    return {item_id: (s - lo) / span for item_id, s in scored}


def fuse(norms: dict[str, dict[str, float]], weights: dict[str, float], k: int) -> Scored:
    """The top k of the weighted sum of each member's normalised scores (:func:`normalised`;
    ties: first seen)."""
    fused: dict[str, float] = {}
    for name, norm in norms.items():
        w = weights.get(name, 0.0)
        for item_id, s in norm.items():
            fused[item_id] = fused.get(item_id, 0.0) + w * s
    return [(i, fused[i]) for i in heapq.nlargest(k, fused, key=fused.__getitem__)]


@dataclass(frozen=True)
class FusedCandidate(Candidate):
    """A hybrid candidate with what each member added to its score (weight x normalised
    score, summing to ``score``): what genrec.explain splits the item's evidence by."""

    parts: tuple[tuple[str, float], ...] = ()


class HybridRetriever:
    name = "hybrid"

    def __init__(
        self,
        members: dict[str, Retriever],
        weights: dict[str, float],
        index: CatalogIndex | None = None,
    ) -> None:
        if "content" not in members:
            raise ValueError("hybrid needs the content retriever among its members")
        self.members = members
        self.index = index  # reads the fused top k's items (None: members' items only)
        self.weights = {name: float(weights.get(name, 0.0)) for name in members}
        # which members rank by ID, checked once (a runtime Protocol check costs ~10 us)
        self._ranks = {
            name: index is not None and isinstance(member, RankingRetriever)
            for name, member in members.items()
        }

    def weights_for(self, query: RetrievalQuery) -> dict[str, float]:
        weights = dict(self.weights)
        total = sum(weights.values()) or 1.0
        if query.text and weights["content"] / total < TEXT_WEIGHT:
            others = total - weights["content"]
            weights["content"] = others * TEXT_WEIGHT / (1 - TEXT_WEIGHT) if others else 1.0
        return weights

    def retrieve(self, query: RetrievalQuery) -> list[Candidate]:
        pool = max(MIN_POOL, 5 * query.k)
        wide = query.widened(pool)
        weights = self.weights_for(query)
        items: dict[str, Item] = {}
        lists: dict[str, Scored] = {}
        for name, member in self.members.items():
            if weights.get(name, 0.0) <= 0:
                continue
            if self._ranks[name]:
                lists[name] = member.ranked(wide)  # type: ignore[attr-defined]
            else:
                got = member.retrieve(wide)
                items.update((c.item.id, c.item) for c in got)
                lists[name] = [(c.item.id, c.score) for c in got]
        norms = {name: normalised(scored) for name, scored in lists.items()}
        # An over-fetch covers IDs a member ranked that the catalog no longer holds.
        fused = fuse(norms, weights, query.k + 8)
        unread = [i for i, _ in fused if i not in items]
        if unread and self.index is not None:
            items.update((it.id, it) for it in self.index.get(unread))
        return [
            FusedCandidate(
                items[i],
                s,
                tuple((m, weights[m] * n[i]) for m, n in norms.items() if n.get(i, 0.0) > 0),
            )
            for i, s in fused
            if i in items
        ][: query.k]
