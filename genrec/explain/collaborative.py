"""Evidence of the retrievers trained on interactions (genrec.retrieval.learned).

- itemknn, ease (:class:`ScoringRetriever`): a score is a sum of one term per history item
  (``model.contributions``), so each history item's term is its part, exactly.
- sasrec (:class:`VectorRetriever`): a score is ``u . v``; a history item's part is the score
  drop when it is left out of the history, for its last ``LOO_ITEMS`` items (older ones barely
  move the encoder's last state): the left-out vectors come from the retrieval's own pass
  (genrec.training.leave_one_out), so only their products with the candidates are new.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from genrec.explain.parts import Table, empty
from genrec.retrieval.base import RetrievalQuery
from genrec.retrieval.learned import ScoringRetriever, VectorRetriever


def learned_parts(
    retriever: ScoringRetriever | VectorRetriever, query: RetrievalQuery, ids: Sequence[str]
) -> Table:
    """The history parts of the items the model knows."""
    known = [i for i in ids if i in retriever.position]
    history = retriever.known_history(query)
    if not known or not history:
        return empty()
    cols = np.asarray([retriever.position[i] for i in known], dtype=np.int64)
    if isinstance(retriever, ScoringRetriever):
        hist, terms = retriever.contributions(history, cols)
    else:
        hist, terms = _drops(retriever, history, cols)
    keys = [("history", retriever.item_ids[h]) for h in hist.tolist()]
    return Table.of_terms(keys, known, terms)


def _drops(
    retriever: VectorRetriever, history: list[int], cols: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(the items left out, the score drop of each item in ``cols`` without each of them)."""
    loo = retriever.left_out(history)  # what the retrieval's own pass made, when it did
    scores = loo.vectors @ retriever.model.net.item_matrix().detach().numpy()[cols].T
    # an item met twice in the history: its drops add up
    left_out, row = np.unique(loo.items, return_inverse=True)
    drops = np.zeros((len(left_out), len(cols)), dtype=np.float32)
    np.add.at(drops, row, scores[0][None, :] - scores[1:])
    return left_out, drops
