"""Rank metrics over candidate lists, and the fusion weight chosen on validation.

A validation example's candidates are the retriever's top N in its own order; the target's
position among them is known (-1 when the retriever missed it: a miss at every cut-off).
Ties are broken by candidate order (the retriever's), as a stable sort in serving does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from genrec.modes.fusion import fuse_scores

KS = (1, 5, 10, 20)
WEIGHTS = tuple(round(0.05 * i, 2) for i in range(21))  # 0, 0.05, ..., 1


def target_rank(scores: Sequence[float], target: int) -> int | None:
    """1-based rank of the target under ``scores`` (higher first, ties by position)."""
    if target < 0:
        return None
    t = scores[target]
    return 1 + sum(1 for i, s in enumerate(scores) if s > t or (s == t and i < target))


def rank_metrics(scores: Sequence[Sequence[float]], targets: Sequence[int]) -> dict[str, float]:
    """Mean Recall/NDCG/MRR at each K and the top pick's position distribution summary."""
    n = max(1, len(targets))
    out: dict[str, float] = {}
    ranks = [target_rank(s, t) for s, t in zip(scores, targets, strict=True)]
    for k in KS:
        hits = [r for r in ranks if r is not None and r <= k]
        out[f"recall@{k}"] = round(len(hits) / n, 6)
        out[f"ndcg@{k}"] = round(sum(1.0 / math.log2(r + 1) for r in hits) / n, 6)
        out[f"mrr@{k}"] = round(sum(1.0 / r for r in hits) / n, 6)
    tops = [max(range(len(s)), key=lambda i: (s[i], -i)) for s in scores if len(s)]
    out["top_pick_first_rate"] = round(sum(1 for t in tops if t == 0) / max(1, len(tops)), 6)
    return out


def choose_fusion_weight(
    lm_logprobs: Sequence[Sequence[float]],
    retrieval_scores: Sequence[Sequence[float]],
    examples: Sequence[Any],
) -> dict[str, Any]:
    """The weight in WEIGHTS with the best validation NDCG@10 (ties: the smaller weight)."""
    targets = [ex.target for ex in examples]
    by_weight: dict[str, float] = {}
    best_w, best = 0.0, -1.0
    for w in WEIGHTS:
        fused = [
            fuse_scores(lp, rs, w) for lp, rs in zip(lm_logprobs, retrieval_scores, strict=True)
        ]
        ndcg = rank_metrics(fused, targets)["ndcg@10"]
        by_weight[f"{w:.2f}"] = ndcg
        if ndcg > best + 1e-12:
            best_w, best = w, ndcg
    return {
        "weight": best_w,
        "normalisation": "z-score per request",
        "chosen_on": "validation NDCG@10",
        "validation_ndcg@10": best,
        "validation_ndcg@10_by_weight": by_weight,
    }
