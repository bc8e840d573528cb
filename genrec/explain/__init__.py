"""Why each item was picked: evidence computed from the scores the request already made.

- :func:`explain_candidates` (retrieval): per candidate, the history items, query words,
  popularity that made its retrieval score, as shares of it (genrec.explain.retrieval).
- :func:`attach`: puts that evidence on the final items, adds the LM's part when it moved an
  item (genrec.explain.lm), marks history from the user's stored events ``user``, and writes one
  plain reason per item (genrec.explain.reasons).
- genrec.explain.sentence: the optional sentence the LM writes (``explain: true``), limited to
  the titles in the item's own evidence.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from genrec.explain.lm import lm_evidence
from genrec.explain.parts import fallback
from genrec.explain.reasons import language, reason
from genrec.explain.retrieval import explain_candidates
from genrec.schema import Evidence, RecommendedItem

__all__ = ["attach", "cited_history", "explain_candidates", "language", "reason"]


def attach(
    items: Sequence[RecommendedItem],
    evidence: Mapping[str, Sequence[Evidence]] | None,
    candidate_ids: Sequence[str],
    *,
    fusion_weight: float | None = None,
    stored: Collection[str] = (),
    lang: str = "en",
    lm: bool = True,
) -> list[RecommendedItem]:
    """The items with ``because`` (strongest first, never empty) and ``reason``. ``stored``:
    the history items that came from the user's stored events (they say ``user``); ``lm``:
    whether an LM ordered the items (False for a retrieval-only list). ``evidence`` None (turned
    off, ``GENREC_EXPLAIN_EVIDENCE=false``): the items as they are."""
    if evidence is None:
        return list(items)
    out = []
    for it in items:
        because = [
            e.model_copy(update={"kind": "user"})
            if e.kind == "history" and e.item_id in stored
            else e
            for e in evidence.get(it.id, ())
        ]
        moved = lm_evidence(it, candidate_ids, fusion_weight) if lm else None
        if moved is not None:
            because.append(moved)
        because.sort(key=lambda e: -e.weight)
        because = because or fallback()
        out.append(it.model_copy(update={"because": because, "reason": reason(because, lang)}))
    return out


def cited_history(because: Sequence[Evidence]) -> list[str]:
    """The history item IDs an item's evidence cites (what the deletion test removes)."""
    return [e.item_id for e in because if e.kind in ("history", "user") and e.item_id]
