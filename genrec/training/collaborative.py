"""Collaborative retrievers over item-index sequences (items 0..n_items-1, oldest first).

- EASE (Steck 2019): a closed-form item-item linear autoencoder, B = I - P / diag(P) with
  P = (X^T X + l2 I)^-1, so the diagonal of B is zero; a user's scores are x_user @ B. Dense
  n x n: for small catalogs only (:func:`ease_bytes` says how small; `genrec train` skips it
  above what fits).
- ItemKNN: item-to-item co-occurrence within a window of the sequences, normalised like an
  asymmetric cosine and pruned to each item's nearest neighbours; a user's scores sum the
  neighbour rows of the history items, each weighted by how recent it is. Counted sparsely,
  a block of items at a time, each block pruned as soon as it is counted, so memory is the
  pruned matrix plus one block's pairs, never n x n.

Both score a batch of histories; the caller masks the history itself.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

import numpy as np
import scipy.sparse as sp

from genrec.training.cooccurrence import (
    BLOCK_PAIRS,
    ItemKNNParams,
    cooccurrence,
    keep_top,
    pair_masses,
)
from genrec.training.sequences import as_sequences


def interaction_matrix(sequences: Sequence[Sequence[int]], n_items: int) -> sp.csr_matrix:
    """Binary (len(sequences), n_items) sparse float32 matrix: 1 where the user interacted."""
    s = as_sequences(sequences)
    s.check(n_items, "sequences")
    x = sp.csr_matrix(
        (np.ones(len(s.items), np.float32), (s.rows(), s.items)), shape=(len(s), n_items)
    )
    x.sum_duplicates()
    x.data[:] = 1.0
    return x


def recency_matrix(
    histories: Sequence[Sequence[int]], n_items: int, recency: float, history_len: int = 0
) -> sp.csr_matrix:
    """(batch, n_items) sparse float32 user rows: the k-th most recent history item weighs
    recency ** k (the last one 1.0), a repeated item adds up its weights; only the last
    ``history_len`` items count (0 = all)."""
    s = as_sequences(histories).tail(history_len)
    rows = s.rows()
    age = (s.indptr[1:][rows] - 1 - np.arange(len(s.items))).astype(np.float64)
    w = sp.csr_matrix(
        (np.power(recency, age), (rows, s.items)), shape=(len(s), n_items), dtype=np.float64
    )
    w.sum_duplicates()
    return w.astype(np.float32)


def history_weights(
    history: Sequence[int], n_items: int, recency: float, history_len: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """One history's row of :func:`recency_matrix`, as (its distinct items, ascending; their
    float32 weights), without scipy's construction, which costs more than the arithmetic."""
    h = np.asarray(history, dtype=np.int64)
    if len(h) and (h.min() < 0 or h.max() >= n_items):
        raise ValueError(f"histories[0] holds an item index outside 0..{n_items - 1}")
    if history_len > 0:
        h = h[-history_len:]
    # np.unique(h, return_inverse=True), in the few array operations it needs (a request
    # calls this per model, and np.unique's own overhead was most of its cost)
    order = np.argsort(h, kind="stable")
    ordered = h[order]
    first = np.empty(len(h), dtype=bool)
    first[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    at = np.empty(len(h), dtype=np.int64)
    at[order] = np.cumsum(first) - 1
    age = np.arange(len(h) - 1, -1, -1, dtype=np.float64)
    weights = np.bincount(at, weights=np.power(recency, age), minlength=int(first.sum()))
    return ordered[first], weights.astype(np.float32)


ROWS_MAX_BYTES = 8 << 20  # one request's dense history rows at most (3,650 items: 574 rows)


@dataclass(frozen=True)
class HistoryRows:
    """One history's distinct items (ascending), their recency weights, and the model's rows
    of them, dense (len(items), n_items): a request's scores are ``weights @ rows``, and its
    evidence reads the candidates' columns of the same rows while they are still in cache
    (genrec.retrieval.learned keeps them for genrec.explain)."""

    items: np.ndarray
    weights: np.ndarray
    rows: np.ndarray

    def terms(self, cols: np.ndarray) -> np.ndarray:
        """Each history item's additive term in the scores of the items at ``cols``."""
        return self.weights[:, None] * self.rows[:, cols]

    def scores(self) -> np.ndarray:
        """(n_items,) float32: the rows added one at a time in float32, as scipy's sparse
        product adds them, so the scores are the same to the bit (a BLAS product is not)."""
        out = np.zeros(self.rows.shape[1], dtype=np.float32)
        for w, row in zip(self.weights, self.rows, strict=True):
            out += w * row
        return out


# ---- EASE ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EASEParams:
    # Chosen on the ml-latest-small validation split (see the training report).
    l2: float = 200.0
    # The k-th most recent history item weighs recency ** k in the user's row (1.0 = plain
    # binary EASE); next-item data rewards recent items heavily.
    recency: float = 0.7


def ease_bytes(n_items: int) -> int:
    """Peak memory of fitting EASE: the float64 Gram matrix, its inverse and B (float64, then
    its float32 copy)."""
    return int(3.5 * 8 * n_items * n_items)


class EASE:
    KEY = "weights"

    def __init__(self, weights: np.ndarray, params: EASEParams) -> None:
        if weights.ndim != 2 or weights.shape[0] != weights.shape[1]:
            raise ValueError(f"EASE weights must be square, got {weights.shape}")
        self.params = params
        self.matrix = weights.astype(np.float32, copy=False)

    @property
    def n_items(self) -> int:
        return self.matrix.shape[0]

    @classmethod
    def fit(
        cls, sequences: Sequence[Sequence[int]], n_items: int, params: EASEParams = EASEParams()
    ) -> Self:
        x = interaction_matrix(sequences, n_items).astype(np.float64)
        gram = (x.T @ x).toarray()
        gram[np.diag_indices(n_items)] += params.l2
        p = np.linalg.inv(gram)
        del gram
        b = -p / np.diag(p)[None, :]
        b[np.diag_indices(n_items)] = 0.0
        return cls(b.astype(np.float32), params)

    def _weights(self, histories: Sequence[Sequence[int]]) -> sp.csr_matrix:
        s = as_sequences(histories)
        s.check(self.n_items, "histories")
        return recency_matrix(s, self.n_items, self.params.recency)

    def scores(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """(batch, n_items) float32; reads only the history items' rows."""
        return np.asarray(self._weights(histories) @ self.matrix, dtype=np.float32)

    batch_scores = scores  # dense: validation ranks a batch at a time

    def history_rows(self, history: Sequence[int]) -> HistoryRows | None:
        """One request's history rows (:class:`HistoryRows`): what its scores read anyway; None
        where their copy would pass ROWS_MAX_BYTES (the sparse product scores)."""
        hist, w = history_weights(history, self.n_items, self.params.recency)
        if len(hist) * self.n_items * 4 > ROWS_MAX_BYTES:
            return None
        return HistoryRows(hist, w, self.matrix[hist])

    def contributions(
        self, history: Sequence[int], items: Sequence[int], rows: HistoryRows | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(hist, terms): the distinct history items that score and each one's additive term
        in each item's score; terms.sum(axis=0) == scores([history])[0][items]. ``rows``:
        this history's :meth:`history_rows`, when the request kept them."""
        cols = np.asarray(items, dtype=np.int64)
        if rows is not None:
            return rows.items, rows.terms(cols)
        hist, w = history_weights(history, self.n_items, self.params.recency)
        return hist, (w[:, None] * self.matrix[np.ix_(hist, cols)]).astype(np.float32)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {self.KEY: self.matrix}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], params: EASEParams) -> Self:
        return cls(np.asarray(arrays[cls.KEY]), params)


# ---- ItemKNN ------------------------------------------------------------------------------------


# Up to this many items a request's history rows are made dense (``history_rows``, within
# ROWS_MAX_BYTES) and candidates' rows are read densely by ``contributions`` (20 rows of 50,000
# float32: 4 MB); above it both stay sparse.
DENSE_ROWS_ITEMS = 50_000


class ItemKNN:
    """A sparse (CSR) item x item similarity; a user's scores are the recency-weighted sum of
    the history items' rows."""

    def __init__(self, similarity: sp.csr_matrix, params: ItemKNNParams) -> None:
        if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1]:
            raise ValueError(f"ItemKNN similarity must be square, got {similarity.shape}")
        self.params = params
        self.matrix = sp.csr_matrix(similarity, dtype=np.float32)
        self.neighbours = params.neighbours  # what fit pruned to (0 = all)

    @property
    def n_items(self) -> int:
        return self.matrix.shape[0]

    @functools.cached_property
    def symmetric(self) -> bool:
        """Whether sim[i, j] == sim[j, i] (to float32 rounding): true of undirected cosine
        counts that were not pruned, the small-catalog default, whose rows are long (a few
        thousand neighbours); checked once, when an explanation first asks."""
        m = self.matrix
        if not np.array_equal(np.diff(m.indptr), np.bincount(m.indices, minlength=m.shape[1])):
            return False  # a row's length differs from its column's: pruned or directional
        m, t = m.copy(), m.T.tocsr()
        m.sort_indices()
        t.sort_indices()
        return np.array_equal(m.indices, t.indices) and np.allclose(m.data, t.data, rtol=1e-6)

    @classmethod
    def fit(
        cls,
        sequences: Sequence[Sequence[int]],
        n_items: int,
        params: ItemKNNParams = ItemKNNParams(),
    ) -> Self:
        s = as_sequences(sequences)
        s.check(n_items, "sequences")
        row, col, pairs = pair_masses(s, n_items, params)
        keep = params.neighbours
        if keep <= 0 and int(pairs.sum()) > params.max_entries:
            keep = max(1, params.max_entries // n_items)
        row_pow = np.power(row, params.alpha)
        col_pow = np.power(col, 1.0 - params.alpha)
        blocks: list[sp.csr_matrix] = []
        # Contiguous blocks of items holding at most BLOCK_PAIRS pairs (one item may exceed).
        cum = np.cumsum(pairs)
        lo = 0
        while lo < n_items:
            before = int(cum[lo - 1]) if lo else 0
            hi = max(lo + 1, int(np.searchsorted(cum, before + BLOCK_PAIRS, side="right")))
            c = cooccurrence(s, n_items, params, rows=(lo, hi))
            local = np.repeat(np.arange(lo, hi), np.diff(c.indptr))
            c.data /= row_pow[local] * col_pow[c.indices] + params.shrink
            blocks.append(keep_top(c, keep).astype(np.float32))
            lo = hi
        model = cls(sp.vstack(blocks, format="csr"), params)
        model.neighbours = keep
        return model

    def _weights(self, histories: Sequence[Sequence[int]]) -> sp.csr_matrix:
        s = as_sequences(histories)
        s.check(self.n_items, "histories")
        return recency_matrix(s, self.n_items, self.params.recency, self.params.history_len)

    def batch_scores(self, histories: Sequence[Sequence[int]]) -> sp.csr_matrix:
        """(batch, n_items) sparse: only items reachable from a history item are stored."""
        return (self._weights(histories) @ self.matrix).tocsr()

    def scores(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """(batch, n_items) dense float32 (a batch of requests, not of all users)."""
        return self.batch_scores(histories).toarray()

    def history_rows(self, history: Sequence[int]) -> HistoryRows | None:
        """A small catalog's (n_items <= DENSE_ROWS_ITEMS) request's history rows made dense
        (:class:`HistoryRows`; scoring through them is faster than the sparse product at 3,650
        items); None above that size or ROWS_MAX_BYTES, where the sparse product scores."""
        if self.n_items > DENSE_ROWS_ITEMS:
            return None
        p = self.params
        hist, w = history_weights(history, self.n_items, p.recency, p.history_len)
        if len(hist) * self.n_items * 4 > ROWS_MAX_BYTES:
            return None
        return HistoryRows(hist, w, self.matrix[hist].toarray())

    def contributions(
        self, history: Sequence[int], items: Sequence[int], rows: HistoryRows | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(hist, terms): the distinct history items that score (after the history_len cut)
        and each one's additive term in each item's score: terms.sum(axis=0) equals
        scores([history])[0][items]. ``rows``: this history's :meth:`history_rows`."""
        cols = np.asarray(items, dtype=np.int64)
        if rows is not None:
            return rows.items, rows.terms(cols)
        p = self.params
        hist, w = history_weights(history, self.n_items, p.recency, p.history_len)
        if self.symmetric and self.n_items <= DENSE_ROWS_ITEMS:
            # the few candidates' rows, not the history's many, made dense then read at the
            # history: a tenth of a millisecond less than scipy's two fancy indexings
            read = self.matrix[cols].toarray()[:, hist].T
        elif self.symmetric:
            read = self.matrix[cols][:, hist].toarray().T
        else:
            read = self.matrix[hist][:, cols].toarray()
        return hist, w[:, None] * read

    def to_arrays(self) -> dict[str, np.ndarray]:
        m = self.matrix
        return {
            "indptr": m.indptr,
            "indices": m.indices,
            "data": m.data,
            "shape": np.asarray(m.shape, dtype=np.int64),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], params: ItemKNNParams) -> Self:
        if "similarity" in arrays:  # a bundle written before the sparse model: dense
            return cls(sp.csr_matrix(np.asarray(arrays["similarity"])), params)
        shape = tuple(int(x) for x in arrays["shape"])
        m = sp.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape)
        return cls(m, params)


# The models that score every item in process, by the name `genrec train --models` knows them.
SCORING: dict[str, type[ItemKNN] | type[EASE]] = {"itemknn": ItemKNN, "ease": EASE}
SCORING_PARAMS: dict[str, type] = {"itemknn": ItemKNNParams, "ease": EASEParams}
