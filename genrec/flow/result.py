"""From grounded picks to the Recommendation's items, and the per-stage clock."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from genrec.modes import Picks
from genrec.modes.fusion import ScoreParts
from genrec.schema import RecommendedItem, Timings


def recommended_items(
    picks: Picks, parts: dict[str, ScoreParts] | None = None
) -> list[RecommendedItem]:
    """One item per pick, best first; ``parts`` (by item ID) are the fused scores' parts."""
    parts = parts or {}
    return [
        RecommendedItem(
            id=m.item.id,
            title=m.item.title,
            score=round(float(s), 6),
            rank=r + 1,
            grounded_by=m.grounded_by,
            confidence=m.confidence,
            from_candidates=m.from_candidates,
            lm_logprob=_rounded(parts[m.item.id].lm_logprob) if m.item.id in parts else None,
            retrieval_score=_rounded(parts[m.item.id].retrieval_score)
            if m.item.id in parts
            else None,
        )
        for r, (m, s) in enumerate(zip(picks.grounded.matches, picks.scores, strict=True))
    ]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


class Clock:
    """Per-stage wall time: ``with clock("llm"): ...`` (a stage timed twice, such as the LM's
    answer and then its explanation sentences, adds up); total from construction."""

    def __init__(self) -> None:
        self._t0 = time.perf_counter()
        self._ms: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._ms[stage] = round(self._ms.get(stage, 0.0) + _ms(time.perf_counter() - t0), 2)

    def timings(self) -> Timings:
        stages = {f"{name}_ms": ms for name, ms in self._ms.items()}
        return Timings(**stages, total_ms=_ms(time.perf_counter() - self._t0))


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)
