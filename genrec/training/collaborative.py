"""Collaborative retrievers over item-index sequences (items 0..n_items-1, oldest first).

- EASE (Steck 2019): a closed-form item-item linear autoencoder, B = I - P / diag(P) with
  P = (X^T X + l2 I)^-1, so the diagonal of B is zero; a user's scores are x_user @ B.
- ItemKNN: item-to-item co-occurrence within a window of the sequences, normalised like an
  asymmetric cosine and pruned to each item's nearest neighbours; a user's scores sum the
  neighbour rows of the history items, each weighted by how recent it is. No training beyond
  counting: what helps on next-item data is order (items seen close together, recent items).

Both score every item for a batch of histories; the caller masks the history itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Self

import numpy as np


def _check_sequences(sequences: Sequence[Sequence[int]], n_items: int, what: str) -> None:
    if n_items < 1:
        raise ValueError(f"n_items must be positive, got {n_items}")
    for row, seq in enumerate(sequences):
        if len(seq) and (min(seq) < 0 or max(seq) >= n_items):
            raise ValueError(f"{what}[{row}] holds an item index outside 0..{n_items - 1}")


def interaction_matrix(sequences: Sequence[Sequence[int]], n_items: int) -> np.ndarray:
    """Binary (len(sequences), n_items) float32 matrix: 1 where the user interacted."""
    x = np.zeros((len(sequences), n_items), dtype=np.float32)
    for row, seq in enumerate(sequences):
        if len(seq):
            x[row, np.asarray(seq, dtype=np.int64)] = 1.0
    return x


def _recent(seq: Sequence[int], recency: float, history_len: int) -> tuple[np.ndarray, np.ndarray]:
    """A history's distinct items and their weights: the k-th most recent occurrence weighs
    recency ** k (the last one 1.0), a repeated item adds up its weights."""
    s = np.asarray(seq, dtype=np.int64)
    if history_len > 0:
        s = s[-history_len:]
    age = np.arange(len(s) - 1, -1, -1, dtype=np.float64)
    items, inverse = np.unique(s, return_inverse=True)
    weights = np.bincount(inverse, weights=np.power(recency, age), minlength=len(items))
    return items, weights.astype(np.float32)


def recency_weights(
    histories: Sequence[Sequence[int]], n_items: int, recency: float, history_len: int = 0
) -> np.ndarray:
    """(batch, n_items) float32 user rows weighted by recency (see _recent)."""
    w = np.zeros((len(histories), n_items), dtype=np.float32)
    for row, seq in enumerate(histories):
        items, weights = _recent(seq, recency, history_len)
        w[row, items] = weights
    return w


def _score_rows(
    histories: Sequence[Sequence[int]], matrix: np.ndarray, recency: float, history_len: int = 0
) -> np.ndarray:
    """user_row @ matrix for each history, reading only the history items' rows: a user touches
    a few hundred of the catalog's rows, so this is far cheaper than the dense product."""
    out = np.zeros((len(histories), matrix.shape[1]), dtype=np.float32)
    for row, seq in enumerate(histories):
        if len(seq):
            items, weights = _recent(seq, recency, history_len)
            # einsum's own loop, not BLAS: a BLAS vector-matrix product spins up threads that
            # cost 10-30 ms on a busy machine for what is a 0.3 ms job.
            out[row] = np.einsum("i,ij->j", weights, matrix[items])
    return out


class _ItemItem:
    """A square item x item matrix (``KEY`` names it in saved arrays); a user's scores are the
    recency-weighted sum of the history items' rows."""

    KEY = "matrix"

    def __init__(self, matrix: np.ndarray, params: Any) -> None:
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"{type(self).__name__} {self.KEY} must be square, got {matrix.shape}")
        self.params = params
        self.matrix = matrix.astype(np.float32, copy=False)

    @property
    def n_items(self) -> int:
        return self.matrix.shape[0]

    def scores(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        _check_sequences(histories, self.n_items, "histories")
        return _score_rows(
            histories, self.matrix, self.params.recency, getattr(self.params, "history_len", 0)
        )

    def contributions(
        self, history: Sequence[int], items: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(hist, terms): the distinct history items that score, and each one's additive term in
        each of ``items``' scores, float32 (len(hist), len(items)); terms.sum(axis=0) equals
        scores([history])[0][items]. Reads only the history rows' item columns."""
        _check_sequences([history], self.n_items, "history")
        if not len(history):
            return np.zeros(0, dtype=np.int64), np.zeros((0, len(items)), dtype=np.float32)
        hist, weights = _recent(
            history, self.params.recency, getattr(self.params, "history_len", 0)
        )
        cols = np.asarray(items, dtype=np.int64)
        terms = weights[:, None] * self.matrix[np.ix_(hist, cols)]
        return hist, terms.astype(np.float32, copy=False)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {self.KEY: self.matrix}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], params: Any) -> Self:
        return cls(np.asarray(arrays[cls.KEY]), params)


# ---- EASE ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EASEParams:
    # Chosen on the ml-latest-small validation split (see the training report).
    l2: float = 200.0
    # The k-th most recent history item weighs recency ** k in the user's row (1.0 = plain
    # binary EASE); next-item data rewards recent items heavily.
    recency: float = 0.7


class EASE(_ItemItem):
    KEY = "weights"

    @classmethod
    def fit(
        cls, sequences: Sequence[Sequence[int]], n_items: int, params: EASEParams = EASEParams()
    ) -> Self:
        _check_sequences(sequences, n_items, "sequences")
        x = interaction_matrix(sequences, n_items).astype(np.float64)
        gram = x.T @ x
        gram[np.diag_indices(n_items)] += params.l2
        p = np.linalg.inv(gram)
        b = -p / np.diag(p)[None, :]
        b[np.diag_indices(n_items)] = 0.0
        return cls(b.astype(np.float32), params)


# ---- ItemKNN ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemKNNParams:
    # Defaults chosen on the ml-latest-small validation split (see the training report).
    window: int = 50  # co-occurrence counts pairs at most this many positions apart (0 = whole)
    directional: bool = False  # count only "j after i" (transitions) rather than both orders
    distance_decay: float = 0.9  # a pair d positions apart counts distance_decay ** (d - 1)
    alpha: float = 0.5  # sim = c_ij / (n_i^alpha * n_j^(1-alpha) + shrink): 0.5 is cosine
    shrink: float = 10.0
    neighbours: int = 0  # keep each item's top neighbours (0 = all)
    recency: float = 0.7  # the k-th most recent history item weighs recency ** k
    history_len: int = 0  # only the last history_len items score (0 = all)

    def as_dict(self) -> dict:
        return asdict(self)


def cooccurrence(
    sequences: Sequence[Sequence[int]], n_items: int, params: ItemKNNParams
) -> np.ndarray:
    """Weighted pair counts c[i, j] of i followed (or preceded) by j within the window."""
    keys: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    for seq in sequences:
        s = np.asarray(seq, dtype=np.int64)
        n = len(s)
        if n < 2:
            continue
        max_d = n - 1 if params.window <= 0 else min(params.window, n - 1)
        for d in range(1, max_d + 1):
            a, b = s[:-d], s[d:]
            w = np.full(len(a), params.distance_decay ** (d - 1))
            keys.append(a * n_items + b)
            weights.append(w)
            if not params.directional:
                keys.append(b * n_items + a)
                weights.append(w)
    if not keys:
        return np.zeros((n_items, n_items))
    # One bincount over all pairs: per-pair accumulation into a dense matrix would be far slower.
    flat = np.bincount(
        np.concatenate(keys), weights=np.concatenate(weights), minlength=n_items * n_items
    )
    c = flat.reshape(n_items, n_items)
    np.fill_diagonal(c, 0.0)
    return c


class ItemKNN(_ItemItem):
    KEY = "similarity"

    @classmethod
    def fit(
        cls,
        sequences: Sequence[Sequence[int]],
        n_items: int,
        params: ItemKNNParams = ItemKNNParams(),
    ) -> Self:
        _check_sequences(sequences, n_items, "sequences")
        c = cooccurrence(sequences, n_items, params)
        # Popularity of each item as the row/column mass of the pair counts, so the
        # normalisation matches what was counted (window, distance weights).
        row = c.sum(axis=1)
        col = c.sum(axis=0)
        denom = np.power(row, params.alpha)[:, None] * np.power(col, 1.0 - params.alpha)[None, :]
        sim = c / (denom + params.shrink)
        if 0 < params.neighbours < n_items:
            # Zero all but each row's top neighbours (ties at the cut-off are kept).
            cut = np.partition(sim, n_items - params.neighbours, axis=1)[
                :, n_items - params.neighbours
            ]
            sim = np.where(sim >= cut[:, None], sim, 0.0)
        return cls(sim.astype(np.float32), params)


# The models that score every item in process, by the name `genrec train --models` knows them.
SCORING: dict[str, type[_ItemItem]] = {"itemknn": ItemKNN, "ease": EASE}
SCORING_PARAMS: dict[str, type] = {"itemknn": ItemKNNParams, "ease": EASEParams}
