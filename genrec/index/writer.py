"""Writing a catalog into its collection: embed and upsert what changed, delete, and ``sync``
(make the collection exactly a given catalog), the one write path of ingest and the eval suite.

Unchanged items cost nothing (per-item content hashes, plus a whole-catalog digest in the
collection metadata). The collection is marked incomplete before the first write and complete
after the last, so a crash half-way leaves it visibly incomplete; running again finishes the job.
Every write stamps ``genrec_written`` so readers in other processes drop their mirrors.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from genrec.catalog import Item
from genrec.index.store import catalog_digest, item_hash, item_to_metadata
from genrec.languages import language_mix

if TYPE_CHECKING:
    from genrec.index.catalog_index import CatalogIndex


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
    """Embed and write the items that are new or changed."""
    started = time.perf_counter()
    store = index.store
    unique: dict[str, Item] = {}
    for item in items:
        unique[item.id] = item  # the last version of an id wins
    model_id = index.embedder.model_id
    hashes = {item_id: item_hash(item, model_id) for item_id, item in unique.items()}
    digest = catalog_digest(hashes)
    meta = store.metadata
    if meta.get("genrec_complete") and meta.get("genrec_digest") == digest:
        stored = hashes  # this exact catalog was written completely before
    else:
        stored = store.stored_hashes(list(unique))
    todo = [item for item_id, item in unique.items() if stored.get(item_id) != hashes[item_id]]
    report = IngestReport(collection=index.name, source=source, total=len(unique))
    report.unchanged = len(unique) - len(todo)
    report.added = sum(1 for item in todo if item.id not in stored)
    report.updated = len(todo) - report.added
    report.languages = language_mix(f"{it.title} {it.description}" for it in unique.values())
    report.warnings = _language_warnings(index, report.languages)
    lexical = index.lexical_wanted(report.languages)
    truncated = index.embedder.truncated
    if todo or not meta.get("genrec_complete") or meta.get("genrec_digest") != digest:
        with store.writing():
            _write(index, todo, hashes, progress=progress, source=source)
            store.set_metadata(
                genrec_complete=True,
                genrec_source=source or None,
                genrec_digest=digest,
                genrec_embedding_model=model_id,
                genrec_lexical=lexical,
                # readers in other processes drop their caches when this moves
                genrec_written=time.time_ns() if todo else meta.get("genrec_written"),
            )
        index.mirror.forget()
    elif bool(meta.get("genrec_lexical")) != lexical:
        store.set_metadata(genrec_lexical=lexical)
    # else: this exact catalog is there, complete: nothing to write (and no lock to take)
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
    index: CatalogIndex, todo: list[Item], hashes: dict[str, str], *, progress: bool, source: str
) -> None:
    """Embed and upsert ``todo`` in batches, the collection marked incomplete meanwhile."""
    from tqdm import tqdm

    store = index.store
    col = store.collection(create=True)
    store.set_metadata(genrec_complete=False, genrec_source=source or None)
    with (
        tqdm(
            total=len(todo),
            desc=f"ingest {index.name}",
            unit="item",
            file=sys.stderr,
            disable=not progress or not todo,
        ) as bar,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="chroma-write") as pool,
    ):
        # Chroma writes batch i while the model embeds batch i+1; one write in flight at most.
        pending: Future | None = None
        pending_n = 0
        for start in range(0, len(todo), store.batch_size):
            batch = todo[start : start + store.batch_size]
            texts = [item.embedding_text() for item in batch]
            vectors = index.embedder.encode(texts)  # catalog side ("passage:" for e5)
            if pending is not None:
                pending.result()  # re-raises a failed write before anything else is sent
                bar.update(pending_n)
            pending = pool.submit(
                col.upsert,
                ids=[item.id for item in batch],
                embeddings=vectors,
                documents=texts,
                metadatas=[item_to_metadata(item, hashes[item.id]) for item in batch],
            )
            pending_n = len(batch)
        if pending is not None:
            pending.result()
            bar.update(pending_n)


def delete(index: CatalogIndex, ids: Sequence[str]) -> None:
    store = index.store
    col = store.collection()
    if col is None or not ids:
        return
    with store.writing():
        store.set_metadata(genrec_digest=None)  # the stored digest no longer fits the contents
        for start in range(0, len(ids), store.batch_size):
            col.delete(ids=list(ids[start : start + store.batch_size]))
        store.set_metadata(genrec_written=time.time_ns())
    index.mirror.forget()


def sync(
    index: CatalogIndex, items: Sequence[Item], *, progress: bool = True, source: str = ""
) -> IngestReport:
    """Make the collection exactly ``items``: upsert them, delete every other record."""
    report = upsert(index, items, progress=progress, source=source)
    keep = {item.id for item in items}
    stale = [item_id for item_id in index.store.ids() if item_id not in keep]
    if stale:
        delete(index, stale)
        # Deleting dropped the digest; write it again for what is now exactly the catalog.
        report.removed = len(stale)
        upsert(index, items, progress=False, source=source)
    return report
