"""Writing a catalog into its collection: embed and upsert what changed, delete, and ``sync``
(make the collection exactly a given catalog), the one write path of ingest and the eval suite.

Streaming: ``items`` is read at most twice (a list, or a :class:`~.catalog_files.CatalogFile`
that reads its file again), and nothing holds every item: the first pass keeps only ID -> content
hash (and the changed items while they are few); the second, when needed, embeds and writes the
changed items batch by batch, the next batch embedded (in a child process, for big writes)
while Chroma stores this one.

Unchanged items cost nothing: a whole-catalog digest in the collection metadata answers "nothing
changed"; otherwise the hash manifest (:mod:`.manifest`) tells which items changed without
reading Chroma, and when no manifest fits the collection the hashes are read from Chroma once.
The collection is marked incomplete before the first write and complete after the last, so a
crash half-way leaves it visibly incomplete; running again finishes the job. Every write stamps
``genrec_written`` so readers in other processes drop their mirrors (and stale manifests die).
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any, Protocol

from pydantic import BaseModel, Field

from genrec.data.item import Item
from genrec.embeddings import Embedder
from genrec.errors import CatalogError
from genrec.index.embed_ahead import embedding_ahead
from genrec.index.mirror import ItemMirror
from genrec.index.records import catalog_digest, item_hash, item_to_metadata
from genrec.index.store import ChromaStore
from genrec.languages import languages_of
from genrec.settings import Settings


class CatalogIndex(Protocol):
    """What the writer needs of a catalog index (genrec.index.catalog_index.CatalogIndex, which
    calls in here: the writer does not import it back)."""

    name: str
    settings: Settings
    store: ChromaStore
    mirror: ItemMirror
    embedder: Embedder

    def lexical_wanted(self, languages: dict[str, int]) -> bool: ...

    def refresh_lexical(self) -> None: ...


# Changed items the first pass holds on to (a 1 % change of a 300k catalog fits); past this the
# second pass reads the source again, so memory stays flat in the catalog's size.
KEEP_CHANGED = 20_000


class IngestReport(BaseModel):
    """What an upsert or ingest did. ``errors`` are the source's bad rows ("line N: ...")."""

    collection: str
    source: str = ""
    total: int = 0  # items offered
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    errors: list[str] = Field(default_factory=list)
    seconds: float = 0.0
    complete: bool = False
    languages: dict[str, int] = Field(default_factory=dict)  # items per script (zh, en, ...)
    lexical: bool = False  # whether the collection has a lexical (BM25) index
    warnings: list[str] = Field(default_factory=list)  # e.g. text the embedder cannot read

    @property
    def written(self) -> int:
        return self.added + self.updated

    @property
    def items_per_s(self) -> float:
        return self.total / self.seconds if self.seconds > 0 else 0.0


def upsert(
    index: CatalogIndex, items: Iterable[Item], *, progress: bool = True, source: str = ""
) -> IngestReport:
    """Embed and write the items that are new or changed (the last version of a repeated ID
    wins). A one-shot iterator is read into a list first; lists and CatalogFiles stream."""
    return _upsert(index, items, progress=progress, source=source, prune=False)


def sync(
    index: CatalogIndex, items: Iterable[Item], *, progress: bool = True, source: str = ""
) -> IngestReport:
    """Make the collection exactly ``items``: upsert them, delete every other record."""
    return _upsert(index, items, progress=progress, source=source, prune=True)


def _upsert(
    index: CatalogIndex, items: Iterable[Item], *, progress: bool, source: str, prune: bool
) -> IngestReport:
    started = time.perf_counter()
    if iter(items) is items:  # a generator cannot be read twice
        items = list(items)
    store = index.store
    model_id = index.embedder.model_id
    meta = store.metadata
    collection_id = store.collection_id()
    stored = {} if collection_id is None else index.store.manifest.load(collection_id, meta)

    # Pass 1: every item's hash; the changed ones kept while they are few.
    hashes: dict[str, str] = {}
    kept: dict[str, Item] | None = {} if stored is not None else None
    mix: Counter[str] = Counter()
    for item in items:
        hashes[item.id] = h = item_hash(item, model_id)
        if kept is not None and stored is not None and stored.get(item.id) != h:
            kept[item.id] = item
            if len(kept) > KEEP_CHANGED:
                kept = None
        if found := languages_of(f"{item.title} {item.description}"):
            mix[found[0]] += 1
    digest = catalog_digest(hashes)
    report = IngestReport(collection=index.name, source=source, total=len(hashes))
    report.languages = dict(mix.most_common())
    report.warnings = _language_warnings(index, report.languages)
    lexical = index.lexical_wanted(report.languages)
    truncated = index.embedder.truncated
    complete = bool(meta.get("genrec_complete"))
    unchanged = complete and meta.get("genrec_digest") == digest

    if unchanged and not prune:
        # this exact catalog was written completely before: nothing to write, no lock to take
        report.unchanged = len(hashes)
        if bool(meta.get("genrec_lexical")) != lexical:
            store.set_metadata(genrec_lexical=lexical)
        return _finish(index, report, lexical, truncated, started)

    todo: list[str] = []  # unchanged: every item is stored as it is; a prune only deletes
    if not unchanged:
        if stored is None:  # no manifest fits the collection: read its hashes once
            stored = store.all_hashes()
            kept = None
        todo = [item_id for item_id, h in hashes.items() if stored.get(item_id) != h]
        report.added = sum(1 for item_id in todo if item_id not in stored)
    report.updated = len(todo) - report.added
    report.unchanged = len(hashes) - len(todo)
    stale = [item_id for item_id in store.ids() if item_id not in hashes] if prune else []
    report.removed = len(stale)
    if todo or stale or not unchanged:
        with store.writing():
            if todo or stale:
                store.collection(create=True)
                store.set_metadata(genrec_complete=False, genrec_source=source or None)
            if todo:
                changed = (
                    (kept[item_id] for item_id in todo)
                    if kept is not None
                    else _changed(items, set(todo), hashes, model_id)
                )
                _write(index, changed, len(todo), hashes, stored or {}, progress=progress)
            _delete_records(index, stale)
            stamp = time.time_ns()  # every write moves it: readers refresh, manifests expire
            store.set_metadata(
                genrec_complete=True,
                genrec_source=source or None,
                genrec_digest=digest,
                genrec_embedding_model=model_id,
                genrec_lexical=lexical,
                genrec_written=stamp,
            )
            # after a prune the collection is exactly the catalog; else the catalog over it
            if prune or stored is None:
                held = hashes
            else:
                stored.update(hashes)
                held = stored
            store.manifest.save(str(store.collection_id()), stamp, held)
        index.mirror.forget()
    return _finish(index, report, lexical, truncated, started)


def _finish(
    index: CatalogIndex, report: IngestReport, lexical: bool, truncated: int, started: float
) -> IngestReport:
    if cut := index.embedder.truncated - truncated:
        report.warnings.append(
            f"{cut} item text(s) were longer than {index.embedder.model_id} reads and were "
            f"embedded from their beginning (the stored items are whole)"
        )
    # The lexical index follows the vectors (rebuilt when the catalog moved, also after an
    # ingest killed before it was built); files under GENREC_HOME, no Chroma lock needed.
    index.refresh_lexical()
    report.lexical = lexical and index.settings.lexical != "off"
    report.complete = True
    report.seconds = time.perf_counter() - started
    return report


def _changed(
    items: Iterable[Item], todo: set[str], hashes: dict[str, str], model_id: str
) -> Iterator[Item]:
    """Pass 2: the items of ``todo`` again, in their latest version (the one hashed)."""
    done: set[str] = set()
    for item in items:
        if item.id in todo and item.id not in done and item_hash(item, model_id) == hashes[item.id]:
            done.add(item.id)
            yield item
    if len(done) != len(todo):
        raise CatalogError(
            f"the catalog changed while it was being ingested ({len(todo) - len(done)} item(s) "
            f"differ between two reads); the collection is marked incomplete: run it again"
        )


def _language_warnings(index: CatalogIndex, languages: dict[str, int]) -> list[str]:
    """What the embedder cannot read of this catalog, and a language mix, said plainly."""
    out = []
    known = index.embedder.languages
    foreign = {lang: n for lang, n in languages.items() if known is not None and lang not in known}
    if foreign:
        shown = ", ".join(f"{n} items in {lang}" for lang, n in foreign.items())
        out.append(
            f"{shown}: {index.embedder.model_id} cannot read them, so they will be found poorly "
            f"by meaning; ingest into a new collection with "
            f"GENREC_EMBEDDING_MODEL=multilingual-e5-small"
        )
    elif len(languages) > 1:
        shown = ", ".join(f"{lang} {n}" for lang, n in languages.items())
        out.append(
            f"the catalog mixes scripts ({shown} items); {index.embedder.model_id} reads them"
        )
    return out


def _write(
    index: CatalogIndex,
    todo: Iterator[Item],
    total: int,
    hashes: dict[str, str],
    stored: dict[str, str],
    *,
    progress: bool,
) -> None:
    """Embed and upsert ``todo`` in batches; for a big write the next batch is embedded in a
    child processes while Chroma stores this one (:mod:`.embed_ahead`: Chroma's upsert holds the
    GIL, so a thread could not overlap them). Memory holds two batches."""
    from tqdm import tqdm

    store = index.store
    col = store.collection(create=True)
    batches = iter(lambda: list(islice(todo, store.batch_size)), [])
    with (
        tqdm(
            total=total,
            desc=f"ingest {index.name}",
            unit="item",
            file=sys.stderr,
            disable=not progress or not total,
            mininterval=1.0,
        ) as bar,
        embedding_ahead(index.embedder, total) as embed,
    ):
        batch = next(batches, None)
        # catalog side ("passage:" for e5)
        pending = embed.submit([item.embedding_text() for item in batch]) if batch else None
        while batch and pending is not None:
            vectors = pending.result()
            following = next(batches, None)
            if following:  # embedded while this batch is written
                pending = embed.submit([item.embedding_text() for item in following])
            # No documents: nothing reads them (the item comes back from its metadata, text
            # search is genrec's own), and Chroma's full-text index over them cost 20 % of
            # the write (5.3 vs 4.4 CPU s per 10,000 short titles)
            col.upsert(
                ids=[item.id for item in batch],
                embeddings=vectors,
                metadatas=_metadatas(col, batch, hashes, stored),
            )
            bar.update(len(batch))
            batch = following


def _metadatas(
    col: Any, batch: list[Item], hashes: dict[str, str], stored: dict[str, str]
) -> list[dict[str, Any]]:
    """The batch's metadata; for a record already stored, every key it no longer has set to
    None: Chroma's upsert merges metadata, so an item whose tags (or an attribute, or its
    popularity) went away would keep the old value in its record and in filters."""
    out = [item_to_metadata(item, hashes[item.id]) for item in batch]
    updated = [i for i, item in enumerate(batch) if item.id in stored]
    if updated:
        got = col.get(ids=[batch[i].id for i in updated], include=["metadatas"])
        old = dict(zip(got["ids"], got["metadatas"], strict=True))
        for i in updated:
            for key in (old.get(batch[i].id) or {}).keys() - out[i].keys():
                out[i][key] = None
    return out


def _delete_records(index: CatalogIndex, ids: list[str]) -> None:
    col = index.store.collection()
    for start in range(0, len(ids) if col is not None else 0, index.store.batch_size):
        col.delete(ids=ids[start : start + index.store.batch_size])


def delete(index: CatalogIndex, ids: Iterable[str]) -> None:
    """Delete these records (unknown IDs are ignored); the manifest follows when it fits."""
    store = index.store
    collection_id = store.collection_id()
    ids = list(ids)
    if collection_id is None or not ids:
        return
    with store.writing():
        meta = store.metadata
        stored = index.store.manifest.load(collection_id, meta)
        # the digest no longer fits the contents; the new stamp retires the manifest meanwhile
        store.set_metadata(genrec_digest=None, genrec_written=time.time_ns())
        _delete_records(index, ids)
        stamp = time.time_ns()
        store.set_metadata(genrec_written=stamp)
        if stored is not None:
            for item_id in ids:
                stored.pop(item_id, None)
            index.store.manifest.save(collection_id, stamp, stored)
    index.mirror.forget()
