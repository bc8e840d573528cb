"""The LM's part in a pick: where the retriever ranked the item, where it ended, and the LM's
log-probability of it (rank mode), added when the LM moved the item."""

from __future__ import annotations

from collections.abc import Sequence

from genrec.schema import Evidence, RecommendedItem


def lm_evidence(
    item: RecommendedItem, candidate_ids: Sequence[str], fusion_weight: float | None
) -> Evidence | None:
    """None when the item kept the retriever's rank. ``weight`` is the LM's share of the final
    order: 1 - the fusion weight (1 for a mode that writes text)."""
    before = candidate_ids.index(item.id) + 1 if item.id in candidate_ids else None
    if before == item.rank:
        return None
    return Evidence(
        kind="lm",
        weight=round(1.0 - (fusion_weight or 0.0), 4),
        rank_before=before,
        rank_after=item.rank,
        lm_logprob=item.lm_logprob,
    )
