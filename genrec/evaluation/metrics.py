"""Ranking and output-quality metrics for one target per request (leave-one-out).

Ranking metrics are over the *full* ranking: a target that is not in the returned list is a miss
(it contributes 0), exactly as if every unreturned item were ranked below the list.

Two ways to rank:
- a ranked list (what the recommender returns): the position decides, ties cannot occur;
- scores over items (the popularity baseline): ties are resolved by their *expected* value under a
  uniformly random tie-break, so no arbitrary order (item ID, insertion order) flatters a method.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from genrec.stats import percentile  # noqa: F401 - part of this module's API

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20)
RANKING_METRICS: tuple[str, ...] = ("recall", "precision", "f1", "ndcg", "mrr")


def _gain(rank: int) -> float:
    return 1.0 / math.log2(rank + 1)


def rank_of(ranked: Sequence[str], target: str) -> int | None:
    """1-based position of `target` in `ranked`, None when it is absent."""
    for i, item in enumerate(ranked, start=1):
        if item == target:
            return i
    return None


def at_k_from_rank(rank: int | None, ks: Iterable[int]) -> dict[str, float]:
    """Recall (= hit rate with one target), precision, F1, NDCG and MRR at each K for a target
    at `rank`. With one relevant item, precision@K is hit/K and F1@K = 2PR/(P+R) = 2/(K+1) on a
    hit: both are recall scaled by a constant of K, reported because readers expect them."""
    out: dict[str, float] = {}
    for k in ks:
        hit = rank is not None and rank <= k
        out[f"recall@{k}"] = 1.0 if hit else 0.0
        out[f"precision@{k}"] = 1.0 / k if hit else 0.0
        out[f"f1@{k}"] = 2.0 / (k + 1) if hit else 0.0
        out[f"ndcg@{k}"] = _gain(rank) if hit else 0.0
        out[f"mrr@{k}"] = 1.0 / rank if hit else 0.0
    return out


def ranking_metrics(ranked: Sequence[str], target: str, ks: Iterable[int]) -> dict[str, float]:
    """Metrics for a ranked list; a target outside the list is a miss."""
    return at_k_from_rank(rank_of(ranked, target), ks)


def ranking_metrics_from_scores(
    scores: Mapping[str, float],
    target: str,
    ks: Iterable[int],
    *,
    mask: Iterable[str] = (),
) -> dict[str, float]:
    """Expected metrics when items are ranked by descending score, masked items removed.

    With `g` items scoring strictly higher than the target and `t` items tied with it (the target
    included), the target's rank is uniform over g+1 .. g+t; each metric is averaged over those
    positions. A target without a score, or masked, is a miss.
    """
    ks = list(ks)
    masked = set(mask)
    if target not in scores or target in masked:
        return at_k_from_rank(None, ks)
    s = scores[target]
    greater = tied = 0
    for item, v in scores.items():
        if item in masked:
            continue
        if v > s:
            greater += 1
        elif v == s:
            tied += 1
    positions = range(greater + 1, greater + tied + 1)
    total = {key: 0.0 for key in at_k_from_rank(None, ks)}
    for r in positions:
        for key, v in at_k_from_rank(r, ks).items():
            total[key] += v
    return {key: v / tied for key, v in total.items()}


def position_bias(top_positions: Sequence[int | None], n: int) -> dict[str, object]:
    """Where the top pick sat among the candidates as the prompt listed them (0-based; None: it
    was not a candidate): the share at each position, the share at the first, and the
    normalised entropy (1 = spread evenly over the N positions, 0 = always the same one)."""
    placed = [p for p in top_positions if p is not None and 0 <= p < n]
    if not placed or n < 1:
        return {"share": [], "first_rate": None, "normalized_entropy": None, "n": 0}
    counts = [0] * n
    for p in placed:
        counts[p] += 1
    share = [c / len(placed) for c in counts]
    entropy = -sum(s * math.log(s) for s in share if s > 0)
    return {
        "share": [round(s, 4) for s in share],
        "first_rate": share[0],
        "normalized_entropy": entropy / math.log(n) if n > 1 else 0.0,
        "n": len(placed),
    }


def ratio(numerator: float, denominator: float) -> float | None:
    """A rate, None (not 0) when there is nothing to divide by: 'no outputs' is not 'all valid'."""
    return numerator / denominator if denominator else None


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None
