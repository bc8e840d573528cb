"""Evidence for a request's candidates, from the retriever that found them.

One explainer per retriever kind, each giving an item's parts as shares of its score
(genrec.explain.parts); hybrid splits an item's evidence by what each member added to its fused
score (``FusedCandidate.parts``, renormalised over the members that explain it), so nothing is
retrieved again. Popularity picks say ``popular``; an item no explainer accounts for says
``fallback``.

Cost per request, beside the retrieval itself: itemknn / ease read the history rows' candidate
columns; sasrec multiplies the left-out user vectors its retrieval made by the candidates;
content one vector lookup of the last ``RECENT`` history items and the candidates (in hybrid,
only with a query or for items only content found).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from genrec.data.item import Item
from genrec.explain.collaborative import learned_parts
from genrec.explain.content import content_parts
from genrec.explain.parts import Evidences, Table, by_id, combine, empty
from genrec.index import CatalogIndex
from genrec.retrieval.base import Candidate, RetrievalQuery, Retriever
from genrec.retrieval.content import ContentRetriever
from genrec.retrieval.hybrid import FusedCandidate, HybridRetriever
from genrec.retrieval.learned import ScoringRetriever, VectorRetriever, WithContentFallback
from genrec.retrieval.popular import PopularRetriever
from genrec.schema import Evidence


def member_parts(
    retriever: Retriever, index: CatalogIndex, query: RetrievalQuery, items: Sequence[Item]
) -> Table:
    """The parts of a single (non-fused) retriever's items; items it cannot explain are left
    out."""
    if isinstance(retriever, WithContentFallback):
        retriever = retriever.learned
    if isinstance(retriever, ScoringRetriever | VectorRetriever):
        return learned_parts(retriever, query, [it.id for it in items])
    if isinstance(retriever, ContentRetriever):
        return content_parts(index, query, items)
    return empty()


def _hybrid_parts(
    hybrid: HybridRetriever,
    index: CatalogIndex,
    query: RetrievalQuery,
    fused: Sequence[FusedCandidate],
) -> Table:
    ids = [c.item.id for c in fused]
    wanted: dict[str, list[Item]] = {}
    for c in fused:
        for member, _ in c.parts:
            # Without a query, content's history evidence is read only for items no learned
            # member scored: elsewhere its share goes to the learned members' evidence (the same
            # history), which saves its vector lookup (~10 ms, a tenth of retrieve p50).
            if member == "content" and not query.text and len(c.parts) > 1:
                continue
            wanted.setdefault(member, []).append(c.item)
    tables = {
        m: member_parts(hybrid.members[m], index, query, items) for m, items in wanted.items()
    }
    # what each member added to each item's fused score, counted where the member explains it
    col = {item_id: j for j, item_id in enumerate(ids)}
    added = {m: np.zeros(len(ids)) for m in tables}
    for j, c in enumerate(fused):
        for member, v in c.parts:
            if member in added:
                added[member][j] += v
    for m, table in tables.items():
        explained = np.zeros(len(ids), dtype=bool)
        explained[[col[i] for i in table.items]] = table.explained()
        added[m] *= explained
    total = sum(added.values(), np.zeros(len(ids)))
    share = {m: a / np.where(total > 0, total, 1.0) for m, a in added.items()}
    return combine(
        ids, [(t, share[m][[col[i] for i in t.items]]) for m, t in tables.items() if t.items]
    )


def explain_candidates(
    retriever: Retriever,
    index: CatalogIndex,
    query: RetrievalQuery,
    candidates: Sequence[Candidate],
) -> Mapping[str, list[Evidence]]:
    """item ID -> its evidence, strongest first, for every candidate (``fallback`` when
    nothing accounts for it); each item's Evidence objects are built when it is read."""
    if isinstance(retriever, PopularRetriever):
        return {c.item.id: [Evidence(kind="popular", weight=1.0)] for c in candidates}
    ids = [c.item.id for c in candidates]
    inner = retriever.learned if isinstance(retriever, WithContentFallback) else retriever
    if isinstance(inner, HybridRetriever):
        fused = [c for c in candidates if isinstance(c, FusedCandidate)]
        table = _hybrid_parts(inner, index, query, fused)
    else:
        table = member_parts(inner, index, query, [c.item for c in candidates])
    # A learned retriever's content fill-ins (unknown history, text only): content's evidence.
    if isinstance(retriever, WithContentFallback):
        explained = set(np.asarray(table.items)[table.explained()].tolist())
        rest = [c.item for c in candidates if c.item.id not in explained]
        if rest:
            fill = content_parts(index, query, rest)
            table = combine(ids, [(table, None), (fill, None)])
    return Evidences(table, ids, by_id(query.history, query.history_ids))
