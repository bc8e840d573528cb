"""ItemKNN's counting: item-to-item co-occurrence within a window of the sequences, sparse, a
block of items at a time (genrec.training.collaborative fits and serves the model from it), and
what a fit costs in memory before it starts."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp

from genrec.training.sequences import Sequences, as_sequences

# Pairs counted at once in one block of items (each pair costs ~40 bytes while a block is
# summed: coordinates, weight, the CSR it becomes): 12M pairs ~ 0.5 GB.
BLOCK_PAIRS = 12_000_000


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


def pair_masses(s: Sequences, n_items: int, params: ItemKNNParams) -> tuple[np.ndarray, ...]:
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


def keep_top(sim: sp.csr_matrix, k: int) -> sp.csr_matrix:
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
