"""Baselines on the same split, so the LM's own contribution is visible:

- ``popularity``: every catalog item ranked by how often it occurs in the training part (the
  histories), the user's history masked; ties count at their expected value (metrics.py);
- ``retrieval``: the retrieved candidates in retrieval order - what the re-ranker starts from;
- ``random``: the same candidates in a seeded random order - what a re-ranker that ignores its input
  would score. Any LM mode should beat it; beating ``retrieval`` means the LM adds something.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterable, Mapping, Sequence

from genrec.evaluation.metrics import ranking_metrics, ranking_metrics_from_scores
from genrec.evaluation.splits import EvalCase


def popularity_scores(counts: Mapping[str, int], catalog: Iterable[str]) -> dict[str, float]:
    """A score for every catalog item (0 for items never seen in training)."""
    return {item: float(counts.get(item, 0)) for item in catalog}


def popularity_metrics(
    case: EvalCase, scores: Mapping[str, float], ks: Sequence[int]
) -> dict[str, float]:
    return ranking_metrics_from_scores(scores, case.target, ks, mask=case.history)


def retrieval_metrics(case: EvalCase, candidates: Sequence[str], ks: Sequence[int]) -> dict:
    return ranking_metrics(candidates, case.wanted, ks)


def random_order(candidates: Sequence[str], *, seed: int, user_id: str) -> list[str]:
    """A shuffle that depends only on (seed, user): reruns and subsets give the same order."""
    rng = random.Random(zlib.crc32(f"{seed}:{user_id}".encode()))
    order = list(candidates)
    rng.shuffle(order)
    return order


def random_metrics(
    case: EvalCase, candidates: Sequence[str], ks: Sequence[int], *, seed: int
) -> dict[str, float]:
    return ranking_metrics(
        random_order(candidates, seed=seed, user_id=case.user_id), case.wanted, ks
    )
