"""The embedded default learns too: ML-100K ships its interactions, so the main job (`genrec
serve`, `genrec demo`, `genrec recommend` on the default collection) trains the default
retrievers on them once, like the model conversion, and recommends with them from the first
request. Fast models only (seconds on 2 cores); ``genrec train`` adds SASRec."""

from __future__ import annotations

from collections.abc import Callable

from genrec.index import CatalogIndex
from genrec.settings import Settings
from genrec.training import artifacts

DEFAULT_MODELS = ("itemknn", "ease")


def ensure_default_retrievers(
    settings: Settings, index: CatalogIndex, *, notice: Callable[[str], None] | None = None
) -> bool:
    """Train the default collection's retrievers if none are there; True when it trained."""
    from genrec.ingest import DEFAULT_COLLECTION

    if (
        not settings.train_default
        or settings.retriever != "auto"
        or index.name != DEFAULT_COLLECTION
        or settings.dataset != "ml-100k"
        or index.metadata.get("genrec_source") != "ml-100k"
    ):
        return False
    try:
        if artifacts.current(settings, index.name) is not None:
            return False
    except (OSError, ValueError):
        pass  # unreadable: train anew
    from genrec.data.interactions import read_log
    from genrec.training.data import build, sequences_from_log
    from genrec.training.train import train_retrievers

    if notice is not None:
        notice("training the default retrievers on ML-100K's interactions (once) ...")
    read = read_log(None, "ml-100k")
    data = build(sequences_from_log(read.interactions), index.ids(), source=read.source)
    train_retrievers(settings, data, index, models=DEFAULT_MODELS, progress=notice)
    return True
