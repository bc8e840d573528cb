"""Load a catalog and write it into its Chroma collection, idempotently.

Re-ingesting the same catalog writes nothing (per-item content hashes, plus a whole-catalog
digest in the collection metadata); a changed item is re-embedded and updated; an ingest killed
half-way leaves the collection marked incomplete, and running it again finishes it without
duplicates. Bad rows are reported with their line numbers and the good rows are ingested, unless
``strict`` is set: then any bad row is fatal and nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from genrec.data.catalog_files import DATASETS, CatalogFile, LoadResult, load_dataset, open_source
from genrec.embeddings import Embedder
from genrec.errors import CatalogError
from genrec.index import CatalogIndex, IngestReport
from genrec.settings import Settings

__all__ = ["IngestReport", "ensure_default_catalog", "ingest", "load_source", "open_catalog"]

DEFAULT_COLLECTION: str = Settings.model_fields["collection"].default


def load_source(
    source: str | Path | None = None,
    *,
    dataset: str | None = None,
    fmt: str | None = None,
    mapping: dict[str, str] | None = None,
    strict: bool = False,
) -> CatalogFile | LoadResult:
    """A file/folder ``source``, or a packaged ``dataset`` (a dataset name, or a path, so that
    ``GENREC_DATASET=/data/ml-latest-small`` makes that folder the default catalog). A JSONL/CSV
    file is a CatalogFile: read as it is written, never held whole."""
    name = dataset or "ml-100k"
    if source is None and name not in DATASETS and Path(name).expanduser().exists():
        source = name
    if source is not None:
        return open_source(source, fmt=fmt, mapping=mapping, strict=strict)
    return LoadResult(load_dataset(name), [], name, "dataset")


def ingest(
    settings: Settings,
    source: str | Path | None = None,
    *,
    dataset: str | None = None,
    collection: str | None = None,
    fmt: str | None = None,
    mapping: dict[str, str] | None = None,
    strict: bool = False,
    progress: bool = True,
    prune: bool = False,
    index: CatalogIndex | None = None,
    embedder: Embedder | None = None,
) -> IngestReport:
    """Ingest a file/folder ``source``, or the packaged ``dataset`` (default: settings.dataset).

    ``prune`` also deletes items that are in the collection but no longer in the source.
    Everything is read and validated before the first write (the writer's first pass only
    reads), so a bad source writes nothing.
    """
    if source is None and dataset is None:
        dataset = settings.dataset
    loaded = load_source(source, dataset=dataset, fmt=fmt, mapping=mapping, strict=strict)
    index = index or CatalogIndex(settings, collection, embedder)
    write = index.sync if prune else index.upsert
    items = loaded if isinstance(loaded, CatalogFile) else loaded.items
    report = write(items, progress=progress, source=loaded.source)
    report.errors = [str(e) for e in loaded.errors]
    return report


def ensure_default_catalog(
    settings: Settings, *, progress: bool = True, embedder: Embedder | None = None
) -> CatalogIndex:
    """The index of ``settings.collection``, with ``settings.dataset`` ingested into it first if
    it is not there completely yet. Cheap when it is: nothing is embedded (the model is not even
    loaded). A collection that holds another catalog (one the user ingested) is left alone."""
    index = CatalogIndex(settings, settings.collection, embedder)
    loaded = load_source(dataset=settings.dataset)
    held = index.metadata.get("genrec_source")
    if held and held != loaded.source:
        return index
    items = loaded if isinstance(loaded, CatalogFile) else loaded.items
    index.upsert(items, progress=progress, source=loaded.source)
    return index


def open_catalog(
    settings: Settings,
    collection: str | None = None,
    *,
    progress: bool = True,
    embedder: Embedder | None = None,
    notice: Callable[[str], None] | None = None,
) -> CatalogIndex:
    """The index of ``collection`` (default: settings.collection), ready to search.

    The one rule for every entry point (CLI, server): only the default collection is filled
    from ``settings.dataset`` automatically (so a fresh machine just works); any other collection
    must have been ingested by the user, and a missing or unfinished one is a CatalogError
    saying how to ingest it, never a silent copy of the default dataset.
    """
    name = collection or settings.collection
    index = CatalogIndex(settings, name, embedder)
    if index.exists() and index.complete and index.count() > 0:
        return index
    if name == DEFAULT_COLLECTION:
        if notice is not None:
            notice(f"preparing the default catalog ({settings.dataset}) ...")
        if name != settings.collection:
            settings = settings.model_copy(update={"collection": name})
        return ensure_default_catalog(settings, progress=progress, embedder=embedder)
    ingest_cmd = f"`genrec ingest FILE --collection {name}`"
    if not index.exists():
        problem = f"does not exist; run {ingest_cmd} first"
    elif not index.complete:
        problem = f"is incomplete (an ingest was interrupted); run {ingest_cmd} again"
    else:
        problem = f"is empty; run {ingest_cmd} first"
    raise CatalogError(f"collection {name!r} {problem}", param="collection")
