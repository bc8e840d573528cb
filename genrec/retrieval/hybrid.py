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
    lo = min(s for _, s in scored)
    hi = max(s for _, s in scored)
    span = hi - lo
    return {item_id: (s - lo) / span if span > 0 else 1.0 for item_id, s in scored}


def fuse(lists: dict[str, Scored], weights: dict[str, float], k: int) -> Scored:
    """The top k of the weighted sum of each list's normalised scores (ties: first seen)."""
    fused: dict[str, float] = {}
    for name, scored in lists.items():
        w = weights.get(name, 0.0)
        for item_id, s in normalised(scored).items():
            fused[item_id] = fused.get(item_id, 0.0) + w * s
    order = sorted(fused, key=lambda i: -fused[i])[:k]
    return [(i, fused[i]) for i in order]


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
            if self.index is not None and isinstance(member, RankingRetriever):
                lists[name] = member.ranked(wide)
            else:
                got = member.retrieve(wide)
                items.update((c.item.id, c.item) for c in got)
                lists[name] = [(c.item.id, c.score) for c in got]
        norms = {name: normalised(scored) for name, scored in lists.items()}
        # An over-fetch covers IDs a member ranked that the catalog no longer holds.
        fused = fuse(lists, weights, query.k + 8)
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
