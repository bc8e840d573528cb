"""The fusion weight chosen on validation.

A validation example's candidates are the retriever's top N in its own order; the target's
position among them is known (-1 when the retriever missed it: a miss at every cut-off).
Ties are broken by candidate order (the retriever's), as a stable sort in serving does; the
metrics are genrec.evaluation.metrics.candidate_metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from genrec.evaluation.metrics import candidate_metrics
from genrec.modes.fusion import fuse_scores

WEIGHTS = tuple(round(0.05 * i, 2) for i in range(21))  # 0, 0.05, ..., 1


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
        ndcg = candidate_metrics(fused, targets)["ndcg@10"]
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
