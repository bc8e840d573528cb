"""Finding a request's candidates: the user's stored state joins the request (``personalise``),
the history is resolved once, the retriever is chosen once (popularity when there is nothing to
go on: an unknown user without a query) and asked (``find``), and the scores it made become each
candidate's evidence (``evidence``). Chroma, embedding and event-store calls are synchronous: the
Recommender runs these in worker threads."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from genrec import explain
from genrec.data.item import Item
from genrec.errors import CatalogError, InvalidRequest
from genrec.events import EventStore
from genrec.index import CatalogIndex
from genrec.modes import Plan
from genrec.retrieval import RetrievalQuery
from genrec.retrieval.base import Candidate, Retriever
from genrec.retrieval.popular import PopularRetriever
from genrec.retrieval.registry import Retrievers
from genrec.schema import MAX_EXCLUDE, Evidence, RecommendRequest, UserSummary
from genrec.settings import Settings


@dataclass(frozen=True)
class Found:
    """What retrieval found for a request."""

    history: list[Item]  # the request's history, resolved (oldest first)
    retriever: Retriever  # the one that found the candidates
    scored: list[Candidate]  # the candidates with its scores, best first
    query: RetrievalQuery | None = None  # what it was asked (the evidence reads the same)


def personalise(
    events: EventStore, index: CatalogIndex, settings: Settings, plan: Plan
) -> tuple[Plan, UserSummary]:
    """The one place user state joins a request (``user_id``): the user's stored history (the
    latest ``settings.user_history`` distinct items, oldest first; genrec.events.store) comes
    first, the request's own history after it (the more recent; an item in both keeps its later
    place); items the user bought or rated are added to ``exclude`` unless the request sets
    ``include_consumed``. A user the store does not know adds nothing: cold start."""
    request = plan.request
    assert request.user_id is not None
    state = events.user_state(index.name, request.user_id, settings.user_history)
    # items removed from the catalog since they were recorded are left out
    stored = [item.id for item in index.get(list(state.history))]
    explicit = [item.id for item in index.resolve_history(request.history)]
    given = set(explicit)
    history = [i for i in stored if i not in given] + explicit
    exclude = list(request.exclude)
    added: list[str] = []
    if not request.include_consumed and state.consumed:
        skip = set(history) | set(exclude)  # the history is never recommended anyway
        added = sorted(state.consumed - skip)[: max(0, MAX_EXCLUDE - len(exclude))]
        exclude += added
    text = (request.query or "").strip()
    summary = UserSummary(
        id=request.user_id,
        history=stored,
        excluded=len(added),
        cold_start=not history and not text,
    )
    personal = request.model_copy(update={"history": history, "exclude": exclude})
    return dataclasses.replace(plan, request=personal), summary


def choose_retriever(
    index: CatalogIndex, retrievers: Retrievers, request: RecommendRequest, history: Sequence[Item]
) -> Retriever:
    """The request's retriever from ``retrievers`` (the request's snapshot of those serving), or
    popularity when there is nothing to go on."""
    if not (request.query or "").strip() and not history:
        return PopularRetriever(index)
    return retrievers.get(request.retriever)


def retrieval_query(plan: Plan, history: Sequence[Item]) -> RetrievalQuery:
    request = plan.request
    return RetrievalQuery(
        text=(request.query or "").strip(),
        history=tuple(history),
        k=plan.n,
        where=request.filters,
        exclude=frozenset(request.exclude),
    )


def find(index: CatalogIndex, retrievers: Retrievers, plan: Plan) -> Found:
    """The candidates for a planned request: the history resolved and the retriever chosen
    here, once; a 400 on ``k`` when fewer than k items match."""
    request = plan.request
    if index.count() == 0:
        raise CatalogError(
            f"the catalog {index.name!r} is empty; ingest items first "
            f"(`genrec ingest --dataset ml-100k` or `genrec ingest FILE`)",
            param="collection",
        )
    history = index.resolve_history(request.history)
    retriever = choose_retriever(index, retrievers, request, history)
    query = retrieval_query(plan, history)
    candidates = retriever.retrieve(query)
    if len(candidates) < plan.k:
        raise InvalidRequest(
            f"only {len(candidates)} catalog items match this request (after filters, "
            f"history and exclusions), fewer than k={plan.k}; lower k or relax filters",
            param="k",
        )
    return Found(history, retriever, candidates, query)


def evidence(
    settings: Settings,
    index: CatalogIndex,
    plan: Plan,
    found: Found,
    served: Collection[str] | None = None,
) -> Mapping[str, list[Evidence]] | None:
    """The evidence (genrec.explain) of the candidates served (default: all of them), from the
    scores the retriever that found them made; None when turned off
    (``settings.explain_evidence``). An item's evidence does not depend on which other items
    are explained with it, so a request explains only the k it serves, after the LM chose them:
    half the work of all n candidates."""
    if not settings.explain_evidence:
        return None
    query = found.query or retrieval_query(plan, found.history)
    scored = found.scored if served is None else [c for c in found.scored if c.item.id in served]
    return explain.explain_candidates(found.retriever, index, query, scored)
