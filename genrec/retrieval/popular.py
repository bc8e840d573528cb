"""Popularity: what a request with nothing to go on (no query, no history: an unknown user) is
served. The catalog's most popular items (``Item.popularity``), honouring filters and exclusions;
ties by item ID, so the answer is stable."""

from __future__ import annotations

from genrec.catalog import Item, id_key
from genrec.index import CatalogIndex
from genrec.retrieval.base import Candidate, RetrievalQuery


class PopularRetriever:
    name = "popular"

    def __init__(self, index: CatalogIndex) -> None:
        self.index = index

    def retrieve(self, query: RetrievalQuery) -> list[Candidate]:
        # the in-process mirror when the catalog has one (no Chroma round trip), else Chroma
        items: list[Item] = list(self.index.mirror.items().values()) or self.index.all_items()
        if query.where:
            allowed = self.index.store.ids_where(query.where, param="filters")
            items = [it for it in items if it.id in allowed]
        banned = query.banned
        ranked = sorted(
            (it for it in items if it.id not in banned),
            key=lambda it: (-(it.popularity or 0), id_key(it.id)),
        )[: query.k]
        return [Candidate(it, float(it.popularity or 0)) for it in ranked]
