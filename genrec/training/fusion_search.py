"""The hybrid's fusion weights, chosen on validation: every weight combination on a grid, scored
by NDCG@10 of the fused lists, all combinations at once.

The search is exactly :func:`genrec.retrieval.hybrid.fuse` of the :func:`normalised` lists per
user and per combination (the same min-max normalisation, the same left-to-right sum, ties to
the item seen first), but it only needs where the target lands: per user, one (combinations x
union of the members' lists) array gives the target's rank under every combination. Before, the
search fused 286 combinations x every validation user through Python dicts, which took most of
a small catalog's training time.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from genrec.evaluation.metrics import at_k_from_rank, gain, mean
from genrec.retrieval.hybrid import Scored

KS = (1, 5, 10, 20)
WEIGHT_STEP = 0.1
MIN_CONTENT_WEIGHT = 0.05  # content keeps a voice: items without interactions stay reachable
TUNED_AT = 10  # the metric the weights are chosen by: NDCG@10


def weight_grid(names: Sequence[str]) -> list[dict[str, float]]:
    """Every combination of weights on a grid of WEIGHT_STEP summing to 1 (the last member takes
    the rest), content raised to at least MIN_CONTENT_WEIGHT; in a fixed order."""
    steps = round(1 / WEIGHT_STEP)
    grid = []
    for combo in itertools.product(range(steps + 1), repeat=len(names) - 1):
        if sum(combo) > steps:
            continue
        raw = [c / steps for c in combo] + [1 - sum(combo) / steps]
        weights = dict(zip(names, raw, strict=True))
        weights["content"] = max(weights["content"], MIN_CONTENT_WEIGHT)
        grid.append(weights)
    return grid


def fused_target_ranks(
    weights: np.ndarray, member_lists: Sequence[Scored], target: str, k: int
) -> np.ndarray:
    """The target's 1-based rank in ``fuse(lists, weights, k)`` for each row of ``weights``
    (combinations x members, columns in ``member_lists``' order); 0 where it is not in the top k."""
    columns: dict[str, int] = {}  # the union of the lists, first seen first (fuse's tie order)
    for scored in member_lists:
        for item_id, _ in scored:
            columns.setdefault(item_id, len(columns))
    if target not in columns:
        return np.zeros(len(weights), dtype=np.int64)
    fused = np.zeros((len(weights), len(columns)))
    for m, scored in enumerate(member_lists):
        if not scored:
            continue
        scores = np.array([s for _, s in scored], dtype=np.float64)
        lo, hi = scores.min(), scores.max()
        span = hi - lo
        normalised = (scores - lo) / span if span > 0 else np.ones_like(scores)
        cols = np.array([columns[i] for i, _ in scored])
        # Added member by member, as fuse's dict sum does, so every float is the same.
        fused[:, cols] += weights[:, m : m + 1] * normalised
    t = columns[target]
    at = fused[:, t : t + 1]
    ahead = (fused > at).sum(axis=1) + (fused[:, :t] == at).sum(axis=1)
    return np.where(ahead < k, ahead + 1, 0)


def choose_weights(
    lists: dict[str, list[Scored]], targets: Sequence[int], item_ids: list[str]
) -> tuple[dict[str, float], dict[str, float]]:
    """The fusion weights with the best validation NDCG@10 (the first of equals in the grid's
    order), and the fused lists' metrics at them. ``lists[name][u]`` is member ``name``'s list for
    validation user ``u``, whose target is ``item_ids[targets[u]]``."""
    names = list(lists)
    grid = weight_grid(names)
    weights = np.array([[w[n] for n in names] for w in grid], dtype=np.float64)
    k = max(KS)
    ranks = np.stack(
        [
            fused_target_ranks(weights, [lists[n][u] for n in names], item_ids[target], k)
            for u, target in enumerate(targets)
        ],
        axis=1,
    )  # combinations x users
    gains = [0.0] + [gain(r) if r <= TUNED_AT else 0.0 for r in range(1, k + 1)]
    best, best_ndcg = 0, None
    for c, row in enumerate(ranks.tolist()):
        ndcg = round(mean([gains[r] for r in row]) or 0.0, 5)  # as reported: ties go first
        if best_ndcg is None or ndcg > best_ndcg + 1e-12:
            best, best_ndcg = c, ndcg
    per_user = [at_k_from_rank(r or None, KS) for r in ranks[best].tolist()]
    metrics = {key: round(mean([m[key] for m in per_user]) or 0.0, 5) for key in per_user[0]}
    return {n: round(v, 4) for n, v in grid[best].items()}, metrics
