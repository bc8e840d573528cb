"""Full-ranking metrics over a score matrix, vectorised: one row per user, one column per item.

The same definitions as genrec.evaluation.metrics.ranking_metrics_from_scores, computed for a
whole batch at once: each user's history items are masked out of the ranking, and ties with the
target count at their expected value under a uniformly random tie-break (with `g` unmasked items
strictly above the target and `t` tied, the target included, its rank is uniform over g+1..g+t).
A target that is masked (it occurs in the history) is a miss, as there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from genrec.evaluation.metrics import DEFAULT_KS


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
    ks = list(ks)
    greater, tied, valid = target_ranks(scores, histories, targets)
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
