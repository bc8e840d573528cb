"""Evidence of the retrievers trained on interactions (genrec.retrieval.learned).

- itemknn, ease (:class:`ScoringRetriever`): a score is a sum of one term per history item
  (``model.contributions``), so each history item's term is its part, exactly.
- sasrec (:class:`VectorRetriever`): a score is ``u . v``; a history item's part is the score
  drop when it is left out of the history (leave-one-out: one batched ``user_vectors`` call over
  the last ``LOO_ITEMS`` history items; older ones barely move the encoder's last state), on
  one thread: a batch this small gains nothing from a second one, and on a busy machine
  waiting for it multiplies the time (measured: 180 ms on 2 threads, 2 ms on 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from genrec.explain.parts import Parts, shares, top_shares
from genrec.retrieval.base import RetrievalQuery
from genrec.retrieval.learned import ScoringRetriever, VectorRetriever

LOO_ITEMS = 10  # sasrec: the most recent history items tried left out


def scoring_parts(
    retriever: ScoringRetriever, query: RetrievalQuery, ids: Sequence[str]
) -> dict[str, Parts]:
    """item ID -> its history parts, for the items the model knows."""
    known = [i for i in ids if i in retriever.position]
    history = retriever.known_history(query)
    if not known or not history:
        return {}
    hist, terms = retriever.model.contributions(history, [retriever.position[i] for i in known])
    names = [retriever.item_ids[int(h)] for h in hist]
    return {item_id: top_shares(names, terms[:, col]) for col, item_id in enumerate(known)}


def vector_parts(
    retriever: VectorRetriever, query: RetrievalQuery, ids: Sequence[str]
) -> dict[str, Parts]:
    known = [i for i in ids if i in retriever.position]
    history = retriever.known_history(query)
    model = retriever.model
    if not known or not history:
        return {}
    window = history[-model.params.max_len :]
    tried = list(range(max(0, len(window) - LOO_ITEMS), len(window)))
    rows = [window] + [window[:j] + window[j + 1 :] for j in tried]
    users = model.user_vectors(rows)  # a few rows: one thread (SASRec.user_vectors)
    cols = np.asarray([retriever.position[i] for i in known], dtype=np.int64)
    vectors = model.net.item_matrix().detach()[cols].numpy()
    scores = users @ vectors.T  # (1 + tried, items)
    drops = scores[0][None, :] - scores[1:]
    names = [retriever.item_ids[window[j]] for j in tried]
    out: dict[str, Parts] = {}
    for col, item_id in enumerate(known):
        terms: Parts = {}  # an item met twice in the history: its drops add up
        for n, d in zip(names, drops[:, col].tolist(), strict=True):
            terms[("history", n)] = terms.get(("history", n), 0.0) + d
        out[item_id] = shares(terms)
    return out
