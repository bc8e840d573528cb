"""The serving model's card: what its fine-tuning chose on validation (``genrec finetune`` writes
it as the model folder's manifest): the retriever's fusion weight and the mode it was chosen for,
the likelihood score, the objective, and what /v1/models shows of it.

The Recommender reads it once, at construction, and holds it: it belongs to the weights the
engine serves, which a running Recommender cannot change (a fine-tune landing in the same folder
later is not what the engine serves; docs/deployment.md). Nothing reads the manifest per request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from genrec.settings import Settings


@dataclass(frozen=True)
class ModelCard:
    manifest: dict[str, Any] | None = None  # None: not a model genrec fine-tuned

    @classmethod
    def read(cls, settings: Settings) -> ModelCard:
        """The card of ``settings.model`` (a ConfigError naming ``model`` when its manifest is
        not readable JSON); an empty card for the packaged model or a model name."""
        if not settings.model or not os.path.isdir(os.path.expanduser(settings.model)):
            return cls()  # the packaged model, or a model name: never fine-tuned here
        from genrec.training.finetune import read_manifest

        return cls(read_manifest(os.path.expanduser(settings.model)))

    @property
    def fine_tuned(self) -> bool:
        return self.manifest is not None

    def likelihood_score(self) -> str:
        """Likelihood mode's calibration the model chose on validation, else PMI."""
        return (self.manifest or {}).get("likelihood_score") or "pmi"

    def fusion_weight(self, settings: Settings, mode: str = "rank") -> float:
        """The retriever's weight in ``mode``'s fused scores: the setting, else the weight the
        fine-tune chose when it chose it for ``mode`` (a manifest without a mode is a rank
        fine-tune's), else 0 (the LM's order)."""
        if settings.fusion_weight is not None:
            return settings.fusion_weight
        fusion = (self.manifest or {}).get("fusion", {})
        if fusion.get("mode", "rank") != mode:
            return 0.0
        return float(fusion.get("weight", 0.0))

    def describe(self) -> dict[str, Any]:
        """What /v1/models says of the ranker's training (base model, template, validation
        NDCG@10); ``fine_tuned`` False for any other model."""
        m = self.manifest
        if m is None:
            return {"fine_tuned": False}
        return {
            "fine_tuned": True,
            "base_model": m.get("base_model"),
            "objective": m.get("objective", "rank"),
            "template": m.get("template"),
            "retriever": m.get("retriever"),
            "created": m.get("created"),
            "validation_ndcg10": m.get("validation", {}).get("best", {}).get("ndcg@10"),
        }


def resolve_fusion_weight(
    settings: Settings, mode: str = "rank", manifest: dict | None = None
) -> float:
    """The setting, else the manifest's weight (``manifest``, else the model folder's) when it
    was chosen for ``mode``, else 0."""
    if settings.fusion_weight is not None:
        return settings.fusion_weight
    card = ModelCard(manifest) if manifest is not None else ModelCard.read(settings)
    return card.fusion_weight(settings, mode)


__all__ = ["ModelCard", "resolve_fusion_weight"]
