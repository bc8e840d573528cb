"""The retrievers a collection can serve, loaded from its current bundle.

:func:`load_retrievers` (at start) never fails on an unreadable bundle: content serves and a
note says why. :func:`bundle_retrievers` (a reload, genrec.recommender) is strict: it raises,
and the caller keeps what it serves and retries.

``content`` always; with a trained bundle (``genrec train``) also each model it holds and
``hybrid``. The default is ``settings.retriever``: ``auto`` means the bundle's best (by
validation NDCG@10), else content. A request's ``retriever`` picks one by name; a name the
collection has not trained is a 400 naming ``retriever``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from genrec.errors import ConfigError, InvalidRequest
from genrec.index import CatalogIndex
from genrec.index.store import ChromaStore
from genrec.retrieval.base import Retriever
from genrec.retrieval.content import ContentRetriever
from genrec.retrieval.hybrid import HybridRetriever
from genrec.retrieval.learned import ScoringRetriever, VectorRetriever, WithContentFallback
from genrec.retrieval.semantic import SemanticRetriever
from genrec.settings import Settings
from genrec.training import artifacts
from genrec.training.semantic import SemanticParams

log = logging.getLogger("genrec.retrieval")


@dataclass
class Retrievers:
    by_name: dict[str, Retriever]
    default: str
    bundle: artifacts.Bundle | None = None
    notes: list[str] = field(default_factory=list)  # e.g. the catalog changed since training

    def get(self, name: str | None) -> Retriever:
        name = name or self.default
        found = self.by_name.get(name)
        if found is None:
            raise InvalidRequest(
                f"retriever {name!r} is not available for this collection (available: "
                f"{', '.join(sorted(self.by_name))}); train it with `genrec train`",
                param="retriever",
            )
        return found

    @property
    def version(self) -> str | None:
        """The bundle's version, None when content alone serves."""
        return self.bundle.version if self.bundle is not None else None

    def describe(self) -> dict[str, Any]:
        """What serves, for /health and /v1/models."""
        doc: dict[str, Any] = {"default": self.default, "available": sorted(self.by_name)}
        if self.bundle is not None:
            m = self.bundle.manifest
            doc["trained"] = {
                "version": m["version"],
                "validation_ndcg@10": {
                    name: model["validation"]["ndcg@10"] for name, model in m["models"].items()
                },
            }
        if self.notes:
            doc["notes"] = list(self.notes)
        return doc


def content_only(index: CatalogIndex) -> Retrievers:
    return Retrievers({"content": ContentRetriever(index)}, "content")


def load_retrievers(settings: Settings, index: CatalogIndex) -> Retrievers:
    notes: list[str] = []
    try:
        bundle = artifacts.current(settings, index.name)
    except (OSError, ValueError) as exc:
        bundle = None
        notes.append(f"the trained retrievers cannot be read ({exc}); content serves")
        log.warning(notes[-1])
    return bundle_retrievers(settings, index, bundle, notes)


def bundle_retrievers(
    settings: Settings,
    index: CatalogIndex,
    bundle: artifacts.Bundle | None,
    notes: list[str] | None = None,
) -> Retrievers:
    """The retrievers of ``bundle`` (content alone for None); whatever cannot be read raises."""
    content = ContentRetriever(index)
    found: dict[str, Retriever] = {"content": content}
    notes = list(notes or [])
    if bundle is not None:
        found.update(_learned(settings, index, bundle, content))
        stale = _staleness(index, bundle)
        for note in stale:
            log.warning(note)
        notes += stale
    wanted = settings.retriever
    if wanted == "auto":
        default = bundle.manifest["default"] if bundle is not None else "content"
    elif wanted in found:
        default = wanted
    else:
        raise ConfigError(
            f"GENREC_RETRIEVER={wanted!r} is not trained for collection {index.name!r} "
            f"(available: {', '.join(sorted(found))}); run `genrec train` or use auto"
        )
    return Retrievers(found, default if default in found else "content", bundle, notes)


def _learned(
    settings: Settings, index: CatalogIndex, bundle: artifacts.Bundle, content: Retriever
) -> dict[str, Retriever]:
    item_ids = bundle.item_ids
    models = bundle.manifest["models"]
    out: dict[str, Retriever] = {}
    scoring = [name for name, m in models.items() if m["kind"] == "scoring"]
    if scoring:
        from genrec.training.collaborative import SCORING, SCORING_PARAMS

        popularity = np.load(bundle.file("popularity.npy"))
        for name in scoring:
            params = SCORING_PARAMS[name](**models[name]["params"])
            with np.load(bundle.file(models[name]["file"])) as arrays:
                model = SCORING[name].from_arrays(dict(arrays), params)
            out[name] = ScoringRetriever(name, model, item_ids, index, popularity)
    for name in (n for n, m in models.items() if m["kind"] == "vector"):
        from genrec.training.sequential import SASRec

        model = SASRec.load(bundle.file(models[name]["file"]))
        out[name] = VectorRetriever(name, model, item_ids, index)
    if "semantic" in models:
        out["semantic"] = semantic_retriever(settings, index, bundle.manifest)
    for name in (n for n, m in models.items() if m["kind"] == "fusion"):
        weights = models[name]["weights"]
        members = {"content": content, **{m: out[m] for m in weights if m in out}}
        out[name] = HybridRetriever(members, weights, index)
    return {name: WithContentFallback(r, content) for name, r in out.items()}


def semantic_retriever(
    settings: Settings, index: CatalogIndex, manifest: dict[str, Any]
) -> SemanticRetriever:
    """The semantic channel over the item-vector set the bundle was trained with; a set since
    rebuilt for another catalog digest (or model) is a ConfigError, never silently used."""
    info = manifest["item_vectors"]
    store = ChromaStore(settings, info["collection"], model_id=info["model_id"])
    meta = store.metadata
    if meta.get("genrec_catalog_digest") != info["catalog_digest"] or not meta.get(
        "genrec_complete"
    ):
        raise ConfigError(
            f"item vectors {info['collection']!r} are for catalog digest "
            f"{meta.get('genrec_catalog_digest')}, the trained bundle for "
            f"{info['catalog_digest']}: run `genrec train` again"
        )
    params = SemanticParams(**manifest["models"]["semantic"]["params"])
    return SemanticRetriever(index, store, params)


def _staleness(index: CatalogIndex, bundle: artifacts.Bundle) -> list[str]:
    trained = bundle.manifest.get("catalog_digest")
    now = index.metadata.get("genrec_digest")
    if trained is None or trained == now:
        return []
    before = bundle.manifest["data"].get("catalog_items")
    return [
        f"collection {index.name!r} changed after its retrievers were trained ({before} items "
        f"then, {index.count()} now): items added since are served by content retrieval, "
        f"items removed are never returned; run `genrec train` again to learn the new catalog"
    ]
