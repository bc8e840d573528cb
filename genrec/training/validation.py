"""Validation at any scale: a model scores a batch of users at a time (sparse rows for itemknn,
dense for ease and sasrec), each batch becomes per-user ranks of the held-out item and, for the
users the hybrid is tuned on, a short top list by argpartition; nothing holds users x items.

Many users: metrics are taken on a seeded sample of at most VALIDATION_USERS of them, the hybrid
weights on at most HYBRID_USERS (each needs one content query). Both sizes are in the manifest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from genrec.evaluation.metrics import metrics_from_ranks, sparse_target_ranks, target_ranks
from genrec.training.sequences import Sequences, as_sequences

VALIDATION_USERS = 20_000  # above this many validated users, a seeded sample of this many
HYBRID_USERS = 2_000  # the hybrid's weights are searched on at most this many of those
BATCH_CELLS = 16_000_000  # a dense batch of scores holds at most this many (64 MB float32)

Top = list[tuple[int, float]]  # (item index, score), best first


def sample(n: int, cap: int, seed: int) -> np.ndarray:
    """Sorted positions of a seeded sample of at most ``cap`` of ``n`` users (all if fewer)."""
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, cap, replace=False))


def popularity_metrics(
    popularity: np.ndarray, histories: Sequence[Sequence[int]], targets: np.ndarray, ks: Iterable
) -> dict[str, float]:
    """The metrics of ranking every user's items by one popularity vector, without tiling it:
    an item above the target is one above it in the sorted counts, less those in the history."""
    s = as_sequences(histories)
    n = len(popularity)
    order = np.sort(popularity)
    t = popularity[targets]
    greater = n - np.searchsorted(order, t, side="right")
    tied = np.searchsorted(order, t, side="right") - np.searchsorted(order, t, side="left")
    keys = np.unique(s.rows() * n + s.items)  # distinct (user, history item)
    rows, items = keys // n, keys % n
    hist_pop, user_t = popularity[items], t[rows]
    greater = greater - np.bincount(rows[hist_pop > user_t], minlength=len(s))
    tied = tied - np.bincount(rows[hist_pop == user_t], minlength=len(s))
    valid = ~np.isin(np.arange(len(s)) * n + targets, keys)
    return metrics_from_ranks(greater, np.maximum(tied, 1), valid, ks)


def _top_sparse(
    row: sp.csr_matrix, hist: np.ndarray, pool: int, popularity: np.ndarray | None
) -> Top:
    idx, val = row.indices, row.data.astype(np.float64)
    keep = ~np.isin(idx, hist)
    idx, val = idx[keep], val[keep]
    if len(idx) > pool:
        top = np.argpartition(-val, pool - 1)[:pool]
        idx, val = idx[top], val[top]
    order = np.argsort(-val, kind="stable")
    out = [(int(i), float(v)) for i, v in zip(idx[order], val[order], strict=True)]
    if len(out) < pool and popularity is not None:
        # The rest of the items score 0; among them the popular first, as serving breaks ties.
        taken = set(idx.tolist()) | set(hist.tolist())
        for i in np.argsort(-popularity, kind="stable")[: pool + len(taken)]:
            if len(out) >= pool:
                break
            if int(i) not in taken:
                out.append((int(i), 0.0))
    return out


def _top_dense(row: np.ndarray, hist: np.ndarray, pool: int) -> Top:
    s = row.astype(np.float64)
    s[hist] = -np.inf
    pool = min(pool, len(s) - 1)
    top = np.argpartition(-s, pool)[:pool]
    top = top[np.argsort(-s[top], kind="stable")]
    return [(int(i), float(s[i])) for i in top if np.isfinite(s[i])]


def rank_users(
    model: Any,
    histories: Sequences,
    targets: np.ndarray,
    ks: Iterable[int],
    *,
    lists_for: np.ndarray | None = None,
    pool: int = 0,
    popularity: np.ndarray | None = None,
) -> tuple[dict[str, float], dict[int, Top]]:
    """Metrics of ``model.batch_scores`` over these users, and the top ``pool`` items of the
    users at positions ``lists_for`` (history masked)."""
    n_items = model.n_items
    batch = max(1, min(2048, BATCH_CELLS // max(n_items, 1)))
    wanted = set((lists_for if lists_for is not None else np.zeros(0, int)).tolist())
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    lists: dict[int, Top] = {}
    for start in range(0, len(histories), batch):
        h = histories[start : start + batch]
        t = targets[start : start + batch]
        scores = model.batch_scores(h)
        if sp.issparse(scores):
            scores = sp.csr_matrix(scores)
            parts.append(sparse_target_ranks(scores, h, t))
        else:
            parts.append(target_ranks(scores, h, t))
        for row in range(len(h)):
            if start + row in wanted:
                hist = np.asarray(h[row], dtype=np.int64)
                lists[start + row] = (
                    _top_sparse(scores[row], hist, pool, popularity)
                    if sp.issparse(scores)
                    else _top_dense(scores[row], hist, pool)
                )
    greater, tied, valid = (np.concatenate(x) for x in zip(*parts, strict=True))
    return metrics_from_ranks(greater, tied, valid, ks), lists
