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
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Self

import numpy as np
import scipy.sparse as sp

from genrec.training.sequences import Sequences, as_sequences

# Pairs counted at once in one block of items (each pair costs ~40 bytes while a block is
# summed: coordinates, weight, the CSR it becomes): 12M pairs ~ 0.5 GB.
BLOCK_PAIRS = 12_000_000


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

    def contributions(
        self, history: Sequence[int], items: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(hist, terms): the distinct history items that score and each one's additive term
        in each item's score; terms.sum(axis=0) == scores([history])[0][items]."""
        hist, w = history_weights(history, self.n_items, self.params.recency)
        cols = np.asarray(items, dtype=np.int64)
        return hist, (w[:, None] * self.matrix[np.ix_(hist, cols)]).astype(np.float32)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {self.KEY: self.matrix}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], params: EASEParams) -> Self:
        return cls(np.asarray(arrays[cls.KEY]), params)


# ---- ItemKNN ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemKNNParams:
    # Defaults chosen on the ml-latest-small validation split (see the training report).
    window: int = 50  # co-occurrence counts pairs at most this many positions apart (0 = whole)
    directional: bool = False  # count only "j after i" (transitions) rather than both orders
    distance_decay: float = 0.9  # a pair d positions apart counts distance_decay ** (d - 1)
    alpha: float = 0.5  # sim = c_ij / (n_i^alpha * n_j^(1-alpha) + shrink): 0.5 is cosine
    shrink: float = 10.0
    # Keep each item's top neighbours (0 = all). Pruning costs quality on ml-latest-small
    # (validation NDCG@10 0.1025 with all, 0.0973 with 200, 0.1016 with 1000), so the default
    # keeps all unless the model would exceed max_entries.
    neighbours: int = 0
    # With neighbours 0: when the counted pairs could exceed this many stored entries (8 bytes
    # each), keep each item's top max_entries // n_items neighbours instead (300k items: 166).
    max_entries: int = 50_000_000
    recency: float = 0.7  # the k-th most recent history item weighs recency ** k
    history_len: int = 0  # only the last history_len items score (0 = all)

    def as_dict(self) -> dict:
        return asdict(self)


def _pair_arrays(
    s: Sequences, params: ItemKNNParams, lo: int = 0, hi: int | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray, float]]:
    """(first items, second items, weight) per distance d, for the pairs whose first item is in
    lo..hi-1: "first d positions before second" and, unless directional, the reverse too.
    Self-pairs (an item repeated) are left out. Only the positions of the block's items are
    read: they are sorted once by how many items follow (precede) them, so each distance's
    positions are a prefix of that order and a block costs its own pairs, not the log's."""
    items = s.items.astype(np.int64)
    n = len(items)
    rows = s.rows()
    before = np.arange(n, dtype=np.int64) - s.indptr[:-1][rows]
    after = s.indptr[1:][rows] - 1 - np.arange(n, dtype=np.int64)
    del rows
    if hi is None:
        block = np.arange(n, dtype=np.int64)
    else:
        block = np.flatnonzero((items >= lo) & (items < hi))
    longest = int(after.max(initial=0))
    max_d = longest if params.window <= 0 else min(params.window, longest)
    orders = [(block[np.argsort(-after[block], kind="stable")], after, 1)]
    if not params.directional:
        orders.append((block[np.argsort(-before[block], kind="stable")], before, -1))
    # how many of the block's positions have at least d items after (before) them
    counts = [
        np.searchsorted(-room[order], -np.arange(max_d + 1), side="right")
        for order, room, _ in orders
    ]
    for d in range(1, max_d + 1):
        w = params.distance_decay ** (d - 1)
        for (order, _, sign), count in zip(orders, counts, strict=True):
            pos = order[: count[d]]
            a, b = items[pos], items[pos + sign * d]
            keep = a != b
            yield a[keep], b[keep], w


def cooccurrence(
    sequences: Sequence[Sequence[int]],
    n_items: int,
    params: ItemKNNParams,
    rows: tuple[int, int] | None = None,
) -> sp.csr_matrix:
    """Weighted pair counts c[i, j] of i followed (or preceded) by j within the window, sparse;
    ``rows`` = (lo, hi) counts only the rows lo..hi-1 (shape (hi - lo, n_items))."""
    s = as_sequences(sequences)
    lo, hi = rows or (0, n_items)
    firsts, seconds, weights = [], [], []
    for a, b, w in _pair_arrays(s, params, lo, hi if rows is not None else None):
        firsts.append((a - lo).astype(np.int32))
        seconds.append(b.astype(np.int32))
        weights.append(np.full(len(a), w, dtype=np.float64))
    if not firsts:
        return sp.csr_matrix((hi - lo, n_items), dtype=np.float64)
    c = sp.csr_matrix(
        (np.concatenate(weights), (np.concatenate(firsts), np.concatenate(seconds))),
        shape=(hi - lo, n_items),
        dtype=np.float64,
    )
    c.sum_duplicates()
    return c


def _masses(s: Sequences, n_items: int, params: ItemKNNParams) -> tuple[np.ndarray, ...]:
    """Row and column mass of the pair counts (what cosine normalises by) and each row's
    number of pairs (what sizes the blocks), without building the counts."""
    row = np.zeros(n_items, np.float64)
    col = np.zeros(n_items, np.float64)
    pairs = np.zeros(n_items, np.int64)
    for a, b, w in _pair_arrays(s, params):
        row += w * np.bincount(a, minlength=n_items)
        col += w * np.bincount(b, minlength=n_items)
        pairs += np.bincount(a, minlength=n_items)
    return row, col, pairs


def _prune(sim: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep each row's k largest entries (ties at the cut-off are kept)."""
    lengths = np.diff(sim.indptr)
    if k <= 0 or lengths.max(initial=0) <= k:
        return sim
    rows = np.repeat(np.arange(sim.shape[0]), lengths)
    order = np.lexsort((-sim.data, rows))  # by row, then descending value
    rank = np.arange(len(order)) - sim.indptr[rows[order]]
    cut = np.full(sim.shape[0], -np.inf, dtype=sim.data.dtype)
    at_k = rank == k - 1
    cut[rows[order][at_k]] = sim.data[order][at_k]
    keep = sim.data >= cut[rows]
    indptr = np.zeros_like(sim.indptr)
    np.cumsum(np.bincount(rows[keep], minlength=sim.shape[0]), out=indptr[1:])
    return sp.csr_matrix((sim.data[keep], sim.indices[keep], indptr), shape=sim.shape)


def itemknn_entries(n_items: int, n_events: int, params: ItemKNNParams) -> int:
    """An upper bound on the fitted model's stored entries."""
    pairs = n_events * 2 * (params.window if params.window > 0 else n_events)
    kept = min(n_items * (params.neighbours or n_items), pairs)
    if not params.neighbours:
        kept = min(kept, params.max_entries + n_items * 16)  # ties at the cut may add a few
    return int(kept)


def itemknn_bytes(n_items: int, n_events: int, params: ItemKNNParams) -> int:
    """Peak memory of one fit: the position arrays (~64 bytes an event), one block of pairs
    (~40 bytes a pair while it is summed), and the model's blocks and their stacked copy (8
    bytes an entry, twice)."""
    pairs = n_events * 2 * (params.window if params.window > 0 else n_events)
    block = min(BLOCK_PAIRS, pairs)
    return int(n_events * 64 + block * 40 + itemknn_entries(n_items, n_events, params) * 16)


# Up to this many items a candidate's row is read densely by ``contributions`` (20 rows of
# 50,000 float32: 4 MB); above it sparsely.
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
        row, col, pairs = _masses(s, n_items, params)
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
            blocks.append(_prune(c, keep).astype(np.float32))
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

    def contributions(
        self, history: Sequence[int], items: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(hist, terms): the distinct history items that score (after the history_len cut)
        and each one's additive term in each item's score: terms.sum(axis=0) equals
        scores([history])[0][items]."""
        p = self.params
        hist, w = history_weights(history, self.n_items, p.recency, p.history_len)
        cols = np.asarray(items, dtype=np.int64)
        if self.symmetric and self.n_items <= DENSE_ROWS_ITEMS:
            # the few candidates' rows, not the history's many, made dense then read at the
            # history: a tenth of a millisecond less than scipy's two fancy indexings
            rows = self.matrix[cols].toarray()[:, hist].T
        elif self.symmetric:
            rows = self.matrix[cols][:, hist].toarray().T
        else:
            rows = self.matrix[hist][:, cols].toarray()
        return hist, w[:, None] * rows

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
