"""Popularity: what a request with nothing to go on (no query, no history: an unknown user) is
served. The catalog's most popular items (``Item.popularity``), honouring filters and exclusions;
ties by item ID, so the answer is stable.

The order comes from the index's catalog summary (built once per process, genrec.index.mirror);
a request reads only the top of it: the first ``k`` plus its exclusions, or with a filter the
first matching ones (CatalogIndex.first_matching), so it costs the same at 300,000 items as at
1,682."""

from __future__ import annotations

from genrec.index import CatalogIndex
from genrec.retrieval.base import Candidate, RetrievalQuery


class PopularRetriever:
    name = "popular"

    def __init__(self, index: CatalogIndex) -> None:
        self.index = index

    def retrieve(self, query: RetrievalQuery) -> list[Candidate]:
        order = self.index.mirror.popular_ids()
        banned = query.banned
        wanted = query.k + len(banned)
        if query.where:
            top = self.index.first_matching(order, query.where, wanted, param="filters")
        else:
            top = order[:wanted]
        ids = [i for i in top if i not in banned][: query.k]
        items = {it.id: it for it in self.index.get(ids)}
        return [Candidate(items[i], float(items[i].popularity or 0)) for i in ids if i in items]
