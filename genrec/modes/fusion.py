"""Score fusion: the LM's per-candidate score combined with the retriever's, in one place.

Any mode whose decode gives a score for every candidate (``Decoded.ranked``: one
``(candidate, probability)`` per candidate, best first: rank today; a mode whose scores are
log-scores, such as a log-likelihood, sets ``Decoded.score_is_log``) is fused here, at one call
site in the Recommender, as a pure function over the scores (the mode's output is not
changed: the Recommender grounds the fused order)::

    fused = (1 - w) * z(log p_LM) + w * z(retriever score)

``z`` standardises over the request's candidates (mean 0, standard deviation 1). Both sides are
on unrelated scales (log-probabilities over 20 labels vs a retriever's cosine, co-occurrence
sum or min-max blend), so each is made unit-free per request; a shift or scale of either (the
LM's temperature, a retriever's units) leaves the fused order unchanged. Standardising rather
than min-max because min-max hinges on the single worst candidate, whose LM log-probability can
be -30 and squash every other one together. ``w`` (``Settings.fusion_weight``, or the value a
fine-tuned model's manifest chose on validation) is 0 by default: the LM's order alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

FLOOR_LOGPROB = -30.0  # a label the engine did not score (probability 0) counts as this


@dataclass(frozen=True)
class ScoreParts:
    """What one candidate's fused score is made of."""

    lm_logprob: float
    retrieval_score: float | None
    fused: float


def zscores(values: Sequence[float]) -> list[float]:
    """Standardised values; all equal (or one value) gives zeros."""
    n = len(values)
    if n == 0:
        return []
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / n
    sd = math.sqrt(var)
    if sd < 1e-12:
        return [0.0] * n
    return [(v - mean) / sd for v in values]


def lm_logprobs(probs: Sequence[float]) -> list[float]:
    return [math.log(p) if p > 0 else FLOOR_LOGPROB for p in probs]


def fuse_scores(
    logprobs: Sequence[float], retrieval: Sequence[float] | None, weight: float
) -> list[float]:
    """The fused score of each candidate (candidate order). Without retriever scores (or with
    weight 0) the LM's log-probabilities themselves."""
    if retrieval is None or weight <= 0.0:
        return list(logprobs)
    if len(retrieval) != len(logprobs):
        raise ValueError("one retriever score per candidate is needed")
    zl, zr = zscores(logprobs), zscores(retrieval)
    return [(1.0 - weight) * a + weight * b for a, b in zip(zl, zr, strict=True)]


def fused_order(
    ranked: Sequence[tuple[int, float]],
    retrieval: Sequence[float] | None,
    weight: float,
    *,
    is_log: bool = False,
) -> tuple[list[tuple[int, float]], dict[int, ScoreParts]]:
    """``ranked`` (candidate, LM probability; a log-score when ``is_log``) re-ordered by the
    fused score, best first, with each candidate's parts. With weight 0 the order and scores are
    unchanged; ties keep the LM's order."""
    n = len(ranked)
    values = [0.0] * n
    for i, p in ranked:
        values[i] = p
    logps = [max(v, FLOOR_LOGPROB) for v in values] if is_log else lm_logprobs(values)
    retr = list(retrieval) if retrieval is not None and len(retrieval) == n else None
    if retr is None or weight <= 0.0:
        parts = {i: ScoreParts(logps[i], retr[i] if retr else None, p) for i, p in ranked}
        return list(ranked), parts
    fused = fuse_scores(logps, retr, weight)
    lm_rank = {i: r for r, (i, _) in enumerate(ranked)}
    order = sorted(range(n), key=lambda i: (-fused[i], lm_rank[i]))
    parts = {i: ScoreParts(logps[i], retr[i], fused[i]) for i in range(n)}
    return [(i, fused[i]) for i in order], parts


@dataclass(frozen=True)
class Fused:
    """A mode's full candidate scoring re-ordered by the fused score."""

    ranked: list[tuple[int, float]]  # (candidate, fused score), best first
    parts: dict[int, ScoreParts]  # candidate -> what its fused score is made of
    weight: float  # the retriever's weight applied (0 when it had no scores to give)


def fuse(
    ranked: Sequence[tuple[int, float]],
    retrieval_scores: Sequence[float],
    n_candidates: int,
    weight: float,
    *,
    is_log: bool = False,
) -> Fused | None:
    """The fused order of a mode that scored every one of ``n_candidates``; None when there is
    nothing to fuse (a mode that writes text, or a partial score list)."""
    if n_candidates == 0 or len(ranked) != n_candidates:
        return None
    retrieval = retrieval_scores if len(retrieval_scores) == n_candidates else None
    applied = weight if retrieval is not None else 0.0
    order, parts = fused_order(ranked, retrieval, applied, is_log=is_log)
    return Fused(order, parts, applied)


__all__ = ["Fused", "ScoreParts", "fuse", "fuse_scores", "fused_order", "lm_logprobs", "zscores"]
