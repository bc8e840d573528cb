"""Serving the semantic-neighbour channel (genrec.training.semantic): the history's text
vectors, read from the item-vector set in Chroma (genrec.index.item_vectors), make one query
vector; the set is searched with it. Two Chroma calls per request (get the history's vectors,
one nearest-neighbour query), nothing per item kept in process: a Chroma server serves it to
every replica. Every catalog item is reachable, including those nobody interacted with."""

from __future__ import annotations

import numpy as np

from genrec.index import CatalogIndex
from genrec.index.store import ChromaStore
from genrec.retrieval.base import Candidate, RetrievalQuery
from genrec.training.semantic import SemanticParams, profile_vector


class SemanticRetriever:
    name = "semantic"

    def __init__(self, index: CatalogIndex, vectors: ChromaStore, params: SemanticParams) -> None:
        self.index = index
        self.vectors = vectors
        self.params = params

    def ranked(self, query: RetrievalQuery) -> list[tuple[str, float]]:
        """(item ID, cosine) best first, no item read from the catalog (the hybrid reads only
        the fused top k)."""
        ids = query.history_ids
        if self.params.history_len:
            ids = ids[-self.params.history_len :]
        found = self.vectors.vectors(ids)
        known = [found[i] for i in ids if i in found]
        if not known:
            return []
        user = profile_vector(np.stack(known), self.params)
        banned = query.banned
        allowed = None
        if query.where:
            allowed = self.index.allowed(query.where, param="filters")
        hits = self.vectors.query(
            user, query.k + len(banned), query.where, param="filters", allowed=allowed
        )
        # cosine space: distance = 1 - cosine (of the profile's direction), so 1 - d is it
        return [(i, 1.0 - float(d)) for i, d in hits if i not in banned][: query.k]

    def retrieve(self, query: RetrievalQuery) -> list[Candidate]:
        ranked = self.ranked(query)
        items = {it.id: it for it in self.index.get([i for i, _ in ranked])}
        return [Candidate(items[i], s) for i, s in ranked if i in items]
