"""Learned retrievers over item-index sequences: collaborative (EASE, ItemKNN) and sequential
(SASRec), plus vectorised full-ranking metrics to choose their settings on a validation split."""

from genrec.training.collaborative import EASE, EASEParams, ItemKNN, ItemKNNParams
from genrec.training.metrics import full_ranking_metrics
from genrec.training.sequential import SASRec, SASRecParams

__all__ = [
    "EASE",
    "EASEParams",
    "ItemKNN",
    "ItemKNNParams",
    "SASRec",
    "SASRecParams",
    "full_ranking_metrics",
]
