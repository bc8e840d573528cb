"""The evaluation's retrievers: trained on the split's training part only, then asked for every
user's candidates (the baselines' rows and what the LM cells re-rank).

No leakage: a case's history is everything before its target (for the test split: all but the
user's last item; for validation: all but the last two), so the training sequences never hold a
target, and ``genrec train``'s own held-out item (each sequence's last) is the item before the
target: choices are made on it, never on the target. The stated-need split trains on the users
who never tagged (genrec.evaluation.statedneed): nothing of a case's user is in training.
"""

from __future__ import annotations

from typing import Any

from genrec.data.item import Item
from genrec.evaluation.prepare import Prepared
from genrec.evaluation.splits import EvalCase
from genrec.index import CatalogIndex
from genrec.index.catalog_index import Channel
from genrec.retrieval import RetrievalQuery
from genrec.retrieval.base import Ranked, Retriever
from genrec.retrieval.content import ContentRetriever
from genrec.retrieval.registry import Retrievers, bundle_retrievers, content_only
from genrec.schema import MAX_HISTORY
from genrec.settings import Settings


def training_sequences(prepared: Prepared) -> dict[str, list[str]]:
    """Per user, the items the retrievers may learn from, oldest first: before the split's
    target, or (stated-need) every rating of the users who never tagged."""
    return prepared.dataset.training_sequences()


def prepare_retrievers(prepared: Prepared, settings: Settings, index: CatalogIndex) -> Retrievers:
    """Train what the suite asks for (or reuse the bundle trained on exactly this data), then
    load the retrievers with the suite's choice as the default."""
    spec = prepared.suite.retrieval
    if prepared.suite.dataset.format == "queries":
        return channel_retrievers(index)  # nothing to train on: the catalog search's channels
    if not spec.train:
        return content_only(index)
    from genrec.training import artifacts
    from genrec.training.data import build
    from genrec.training.train import train_retrievers

    data = build(training_sequences(prepared), index.ids(), source=prepared.dataset.source)
    fingerprint = data.fingerprint()
    # Any kept bundle trained on exactly this data, not only the serving one: a fine-tune trains
    # a test split's retrievers and its validation split's on the same collection, one after
    # the other.
    try:
        found = artifacts.bundles(settings, index.name)
    except OSError:
        found = []
    bundle = next((b for b in found if _trained_on(b.manifest, fingerprint, prepared)), None)
    if bundle is None:
        progress = None if not prepared.options.progress else _say
        train_retrievers(
            settings,
            data,
            index,
            models=spec.train,
            seed=prepared.suite.protocol.seed,
            max_seconds=spec.max_seconds,
            progress=progress,
        )
        bundle = artifacts.current(settings, index.name)
    serving = settings.model_copy(update={"retriever": spec.retriever})
    return bundle_retrievers(serving, index, bundle)


def _trained_on(manifest: dict[str, Any], fingerprint: str, prepared: Prepared) -> bool:
    spec = prepared.suite.retrieval
    return (
        manifest["data"].get("fingerprint") == fingerprint
        and {n for n, m in manifest["models"].items() if m["kind"] != "fusion"} == set(spec.train)
        and manifest.get("seed") == prepared.suite.protocol.seed
    )


def _say(msg: str) -> None:
    import sys

    print(msg, file=sys.stderr, flush=True)


def query_for(
    case: EvalCase, items: dict[str, Item], k: int, inputs: str | None = None
) -> RetrievalQuery:
    """What a retriever is asked for one case: the same as the LM cells' requests. ``query``
    input: the stated need alone, the history only excluded (what the user has seen is never
    recommended, whatever the input)."""
    if inputs == "query":
        return RetrievalQuery(text=case.query, history=(), k=k, exclude=frozenset(case.history))
    recent = case.history[-MAX_HISTORY:]
    return RetrievalQuery(
        text=case.query if inputs == "both" else "",
        history=tuple(items[i] for i in recent),
        k=k,
        exclude=frozenset(case.history[:-MAX_HISTORY]),
    )


def candidate_lists(
    prepared: Prepared, index: CatalogIndex, retrievers: Retrievers, inputs: str | None = None
) -> dict[str, dict[str, list[str]]]:
    """retriever name -> case -> candidate IDs (suite.candidates of them, best first)."""
    items = {it.id: it for it in index.get(list(prepared.dataset.items))}
    k = prepared.suite.candidates
    queries = {case.user_id: query_for(case, items, k, inputs) for case in prepared.cases}
    return {
        name: {
            user: [c.item.id for c in retriever.retrieve(query)] for user, query in queries.items()
        }
        for name, retriever in retrievers.by_name.items()
    }


class ChannelRetriever(ContentRetriever):
    """Content retrieval on one channel of the catalog search (dense or lexical alone)."""

    def __init__(self, index: CatalogIndex, channel: Channel) -> None:
        super().__init__(index)
        self.name = channel
        self.channel: Channel = channel

    def ranked(self, query: RetrievalQuery) -> Ranked:
        # ContentRetriever.ranked's options, on one channel
        opts = {"k": query.k, "where": query.where, "exclude": sorted(query.exclude)}
        return self.index.rank_profile(
            query.text, query.history_ids, param="filters", channel=self.channel, **opts
        )


def channel_retrievers(index: CatalogIndex) -> Retrievers:
    """A query set's retrievers (genrec.evaluation.queryset): ``fused``, the content retriever
    and the default (what the LM cells re-rank), ``dense``, and ``lexical`` where the collection
    has a lexical index."""
    found: dict[str, Retriever] = {
        "fused": ContentRetriever(index),
        "dense": ChannelRetriever(index, "dense"),
    }
    if index.lexical_enabled():
        found["lexical"] = ChannelRetriever(index, "lexical")
    return Retrievers(found, "fused")
