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

from genrec.data.item import Item
from genrec.explain.collaborative import learned_parts
from genrec.explain.content import content_parts
from genrec.explain.parts import Evidences, Parts, add, by_id
from genrec.index import CatalogIndex
from genrec.retrieval.base import Candidate, RetrievalQuery, Retriever
from genrec.retrieval.content import ContentRetriever
from genrec.retrieval.hybrid import FusedCandidate, HybridRetriever
from genrec.retrieval.learned import ScoringRetriever, VectorRetriever, WithContentFallback
from genrec.retrieval.popular import PopularRetriever
from genrec.schema import Evidence


def member_parts(
    retriever: Retriever, index: CatalogIndex, query: RetrievalQuery, items: Sequence[Item]
) -> dict[str, Parts]:
    """item ID -> parts, for a single (non-fused) retriever; items it cannot explain are left
    out."""
    ids = [it.id for it in items]
    if isinstance(retriever, WithContentFallback):
        retriever = retriever.learned
    if isinstance(retriever, ScoringRetriever | VectorRetriever):
        return learned_parts(retriever, query, ids)
    if isinstance(retriever, ContentRetriever):
        return content_parts(index, query, items)
    return {}


def _hybrid_parts(
    hybrid: HybridRetriever,
    index: CatalogIndex,
    query: RetrievalQuery,
    fused: Sequence[FusedCandidate],
) -> dict[str, Parts]:
    wanted: dict[str, list[Item]] = {}
    for c in fused:
        for member, _ in c.parts:
            # Without a query, content's history evidence is read only for items no learned
            # member scored: elsewhere its share goes to the learned members' evidence (the same
            # history), which saves its vector lookup (~10 ms, a tenth of retrieve p50).
            if member == "content" and not query.text and len(c.parts) > 1:
                continue
            wanted.setdefault(member, []).append(c.item)
    by_member = {
        m: member_parts(hybrid.members[m], index, query, items) for m, items in wanted.items()
    }
    out: dict[str, Parts] = {}
    for c in fused:
        merged: Parts = {}
        explained = [(m, v) for m, v in c.parts if by_member.get(m, {}).get(c.item.id)]
        total = sum(v for _, v in explained)
        for member, v in explained:
            add(merged, by_member[member][c.item.id], v / total if total > 0 else 0.0)
        out[c.item.id] = merged
    return out


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
    inner = retriever.learned if isinstance(retriever, WithContentFallback) else retriever
    fused = [c for c in candidates if isinstance(c, FusedCandidate)]
    parts: dict[str, Parts] = {}
    if isinstance(inner, HybridRetriever):
        parts = _hybrid_parts(inner, index, query, fused)
    else:
        parts = member_parts(inner, index, query, [c.item for c in candidates])
    # A learned retriever's content fill-ins (unknown history, text only): content's evidence.
    rest = [c.item for c in candidates if not parts.get(c.item.id)]
    if rest and isinstance(retriever, WithContentFallback):
        parts.update(content_parts(index, query, rest))
    return Evidences(parts, [c.item.id for c in candidates], by_id(query.history))
