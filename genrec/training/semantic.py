"""The semantic-neighbour channel: items scored by the cosine of their text vectors with the
history's (genrec.index.item_vectors; the served LM's by default).

A user's score for item j is sum_h w_h cos(v_h, v_j) over the history items h, the k-th most
recent weighing ``recency ** k``: with unit vectors that is the dot product of item j's vector
with the weighted sum of the history's, so serving is one vector query over the set in Chroma
(genrec.retrieval.semantic) and validation one matrix product per batch of users. It reaches
every catalog item, including those with few or no interactions (the cold items that ID models
rank poorly), which is what it adds to the hybrid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from genrec.training.collaborative import recency_matrix
from genrec.training.sequences import as_sequences

RECENCY_GRID = (0.5, 0.7, 0.9)  # chosen per training run on validation NDCG@10


@dataclass(frozen=True)
class SemanticParams:
    recency: float = 0.7  # the k-th most recent history item weighs recency ** k
    history_len: int = 20  # only the most recent items make the profile (0 = all)


class SemanticNeighbours:
    """Scores from a (n_items, dim) matrix of unit text vectors, in training's item order."""

    def __init__(self, vectors: np.ndarray, params: SemanticParams = SemanticParams()) -> None:
        self.vectors = np.asarray(vectors, dtype=np.float32)
        self.params = params

    @property
    def n_items(self) -> int:
        return self.vectors.shape[0]

    def profiles(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """(batch, dim): each history's recency-weighted sum of item vectors."""
        s = as_sequences(histories)
        s.check(self.n_items, "histories")
        w = recency_matrix(s, self.n_items, self.params.recency, self.params.history_len)
        return np.asarray(w @ self.vectors, dtype=np.float32)

    def scores(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        return self.profiles(histories) @ self.vectors.T

    batch_scores = scores


def profile_vector(vectors: np.ndarray, params: SemanticParams) -> np.ndarray:
    """One request's query vector from its history's vectors (oldest first), unit length."""
    v = np.asarray(vectors, dtype=np.float32)
    if params.history_len:
        v = v[-params.history_len :]
    weights = np.power(params.recency, np.arange(len(v))[::-1]).astype(np.float32)
    out = weights @ v
    norm = float(np.linalg.norm(out))
    return out / norm if norm > 0 else out
