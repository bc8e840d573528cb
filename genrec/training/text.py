"""The retrievers of `genrec train` that read the items' text vectors, and the hybrids.

- ``sasrec_text``: SASRec with text-aware item embeddings (genrec.training.sequential_text),
  ``settings.sasrec_text`` says how; stored and served exactly as ``sasrec``.
- ``semantic``: the semantic-neighbour channel (genrec.training.semantic); its recency is chosen
  on validation; it serves from the item-vector set in Chroma.
- Hybrids: ``hybrid`` fuses content with every learned member, a text-aware one in place of its
  ID-only twin (``sasrec_text`` for ``sasrec``); when text members were trained, ``hybrid_id``
  fuses content with the ID-only members alone, so one run compares the two on the same users.
  At most five members a hybrid keeps the weight grid small (1,001 points at step 0.1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from genrec.settings import Settings
from genrec.training import validation
from genrec.training.semantic import RECENCY_GRID, SemanticNeighbours, SemanticParams
from genrec.training.sequences import Sequences

KS = (1, 5, 10, 20)
POOL = 100  # each member's list length in the hybrid (genrec.retrieval.hybrid.MIN_POOL)
TEXT_TWINS = {"sasrec_text": "sasrec"}  # a text-aware member and the ID-only one it replaces
TEXT_MEMBERS = ("sasrec_text", "semantic")


def hybrid_members(members: Sequence[str]) -> dict[str, list[str]]:
    """hybrid -> its members (content first, as trained)."""
    text = [m for m in members if m in TEXT_MEMBERS]
    replaced = {TEXT_TWINS[m] for m in text if m in TEXT_TWINS}
    out = {"hybrid": [m for m in members if m not in replaced]}
    if text:
        out["hybrid_id"] = [m for m in members if m not in TEXT_MEMBERS]
    return out


def fit_sasrec(
    name: str,
    train: Sequences,
    n_items: int,
    held_out: tuple[Sequences, np.ndarray],
    settings: Settings,
    text: np.ndarray | None,
    *,
    params: Any,
    seed: int,
    max_seconds: float | None,
    say: Callable[[str], None],
) -> tuple[Any, dict[str, Any]]:
    """Fit ``sasrec`` or ``sasrec_text``; returns the model and its manifest entry."""
    from genrec.training.sequential import SASRec, SASRecParams
    from genrec.training.sequential_text import fit_text_sasrec

    params = params or SASRecParams()

    def epoch_done(event: dict) -> None:
        line = f"{name}: epoch {event['epoch']} loss {event['loss']:.4f} {event['seconds']}s"
        if "validation" in event:
            line += f" validation NDCG@10 {event['validation']['ndcg@10']:.4f}"
        say(line)

    common = {"validation": held_out, "progress": epoch_done, "max_seconds": max_seconds}
    if name == "sasrec_text":
        assert text is not None
        model, report = fit_text_sasrec(
            train, n_items, text, settings.sasrec_text, params, seed=seed, **common
        )
    else:
        model, report = SASRec.fit(train, n_items, params, seed=seed, **common)
    entry = {"kind": "vector", "file": f"{name}.pt", "params": asdict(params), "training": report}
    return model, entry


def fit_semantic(
    text: np.ndarray, histories: Sequences, targets: np.ndarray, lists_for: np.ndarray
) -> tuple[dict[str, Any], dict[int, validation.Top]]:
    """The recency with the best validation NDCG@10; its manifest entry and top lists."""
    best: tuple[float, SemanticParams, dict, dict] | None = None
    tried = {}
    for recency in RECENCY_GRID:
        params = SemanticParams(recency=recency)
        metrics, found = validation.rank_users(
            SemanticNeighbours(text, params), histories, targets, KS, lists_for=lists_for, pool=POOL
        )
        tried[str(recency)] = round(float(metrics["ndcg@10"]), 5)
        if best is None or metrics["ndcg@10"] > best[0] + 1e-12:
            best = (metrics["ndcg@10"], params, metrics, found)
    assert best is not None
    _, params, metrics, found = best
    entry = {
        "kind": "semantic",
        "params": asdict(params),
        "validation": {k: round(float(v), 5) for k, v in metrics.items()},
        "recency_tried": tried,
    }
    return entry, found
