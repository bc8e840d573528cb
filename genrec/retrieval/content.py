"""Content retrieval: the catalog's own text vectors in Chroma (genrec.index), searched by the
query text and/or the history's decayed profile. Serves every item, including those nobody has
interacted with yet (cold start)."""

from __future__ import annotations

from genrec.index import CatalogIndex
from genrec.retrieval.base import Candidate, Ranked, RetrievalQuery


class ContentRetriever:
    name = "content"

    def __init__(self, index: CatalogIndex) -> None:
        self.index = index

    def retrieve(self, query: RetrievalQuery) -> list[Candidate]:
        return [Candidate(h.item, h.score) for h in self.index.hits(self.ranked(query))]

    def ranked(self, query: RetrievalQuery) -> Ranked:
        return self.index.rank_profile(
            query.text,
            query.history_ids,
            k=query.k,
            where=query.where,
            exclude=sorted(query.exclude),
            param="filters",
        )
