"""Full-ranking metrics over a score matrix, vectorised: one row per user, one column per item.

Scores come a batch of users at a time (dense rows, or sparse rows whose missing entries are
0): :func:`target_ranks` / :func:`sparse_target_ranks` turn a batch into per-user ranks and
:func:`metrics_from_ranks` averages them, so no caller needs all users' scores at once.

The same definitions as genrec.evaluation.metrics.ranking_metrics_from_scores, computed for a
whole batch at once: each user's history items are masked out of the ranking, and ties with the
target count at their expected value under a uniformly random tie-break (with `g` unmasked items
strictly above the target and `t` tied, the target included, its rank is uniform over g+1..g+t).
A target that is masked (it occurs in the history) is a miss, as there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import scipy.sparse as sp

from genrec.evaluation.metrics import DEFAULT_KS
from genrec.training.sequences import as_sequences


def _history_keys(histories: Sequence[Sequence[int]], n_items: int) -> np.ndarray:
    """Sorted distinct row * n_items + item keys of the histories."""
    s = as_sequences(histories)
    return np.unique(s.rows() * n_items + s.items)


def sparse_target_ranks(
    scores: sp.csr_matrix, histories: Sequence[Sequence[int]], targets: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """target_ranks for sparse score rows (a missing entry scores 0), exact: it reads only
    the stored entries and counts the implicit zeros."""
    scores = sp.csr_matrix(scores)
    n_users, n_items = scores.shape
    tgt = np.asarray(targets, dtype=np.int64)
    if len(histories) != n_users or len(tgt) != n_users:
        raise ValueError(
            f"scores must be (users, items) with one history and target per row; got scores "
            f"{scores.shape}, {len(histories)} histories, {len(tgt)} targets"
        )
    if n_users and (tgt.min() < 0 or tgt.max() >= n_items):
        raise ValueError(f"targets must be item indices in 0..{n_items - 1}")
    users = np.arange(n_users, dtype=np.int64)
    keys = _history_keys(histories, n_items)
    hist = sp.csr_matrix(
        (np.ones(len(keys), np.float32), (keys // n_items, keys % n_items)),
        shape=(n_users, n_items),
    )
    # Open (not history) stored scores: the scores less their history entries. An entry that
    # becomes 0 is dropped, and counts among the items that score 0, as it should.
    open_ = (scores - scores.multiply(hist)).tocsr()
    open_.eliminate_zeros()
    valid = np.asarray(hist[users, tgt]).ravel() == 0
    target_score = np.asarray(scores[users, tgt]).ravel().astype(scores.dtype)
    open_row = np.repeat(users, np.diff(open_.indptr))
    t = target_score[open_row]
    greater = np.bincount(open_row[open_.data > t], minlength=n_users)
    tied = np.bincount(open_row[open_.data == t], minlength=n_users)
    # Items neither stored nor in the history score 0.
    zeros = n_items - np.diff(open_.indptr) - np.diff(hist.indptr)
    greater = greater + np.where(target_score < 0, zeros, 0)
    tied = tied + np.where(target_score == 0, zeros, 0)
    return greater, np.maximum(tied, 1), valid


def history_mask(histories: Sequence[Sequence[int]], n_items: int) -> np.ndarray:
    """Boolean (batch, n_items): True where the item is in that user's history."""
    mask = np.zeros((len(histories), n_items), dtype=bool)
    for row, history in enumerate(histories):
        if len(history):
            mask[row, np.asarray(history, dtype=np.int64)] = True
    return mask


def target_ranks(
    scores: np.ndarray, histories: Sequence[Sequence[int]], targets: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per user: items strictly above the target, items tied with it (target included), and
    whether the target can be ranked at all (not masked). History items are excluded."""
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[0] != len(histories) or len(targets) != len(histories):
        raise ValueError(
            f"scores must be (users, items) with one history and target per row; got scores "
            f"{scores.shape}, {len(histories)} histories, {len(targets)} targets"
        )
    n_users, n_items = scores.shape
    tgt = np.asarray(targets, dtype=np.int64)
    if n_users and (tgt.min() < 0 or tgt.max() >= n_items):
        raise ValueError(f"targets must be item indices in 0..{n_items - 1}")
    mask = history_mask(histories, n_items)
    valid = ~mask[np.arange(n_users), tgt]
    target_score = scores[np.arange(n_users), tgt][:, None]
    open_ = ~mask
    greater = ((scores > target_score) & open_).sum(axis=1)
    tied = ((scores == target_score) & open_).sum(axis=1)
    return greater, np.maximum(tied, 1), valid


def _cumulative(gain: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(gain)])


def full_ranking_metrics(
    scores: np.ndarray,
    histories: Sequence[Sequence[int]],
    targets: Sequence[int],
    ks: Iterable[int] = DEFAULT_KS,
) -> dict[str, float]:
    """Mean NDCG@K, Recall@K and MRR@K over users, history masked, ties at expected value."""
    if sp.issparse(scores):
        return metrics_from_ranks(*sparse_target_ranks(scores, histories, targets), ks)
    return metrics_from_ranks(*target_ranks(scores, histories, targets), ks)


def metrics_from_ranks(
    greater: np.ndarray, tied: np.ndarray, valid: np.ndarray, ks: Iterable[int] = DEFAULT_KS
) -> dict[str, float]:
    """The mean metrics of per-user ranks (see target_ranks), e.g. concatenated batches."""
    ks = list(ks)
    k_max = max(ks)
    ranks = np.arange(1, k_max + 1, dtype=np.float64)
    cum = {
        "recall": _cumulative(np.ones(k_max)),
        "ndcg": _cumulative(1.0 / np.log2(ranks + 1)),
        "mrr": _cumulative(1.0 / ranks),
    }
    out: dict[str, float] = {}
    n = len(greater)
    for k in ks:
        hi = np.minimum(greater + tied, k)
        lo = np.minimum(greater, k)
        for name, c in cum.items():
            # Sum of the metric over the tied positions g+1..g+t that fall within the top k.
            per_user = np.where(valid, (c[hi] - c[lo]) / tied, 0.0)
            out[f"{name}@{k}"] = float(per_user.sum() / n) if n else 0.0
    return out
