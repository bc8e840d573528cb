"""The catalog index: items embedded into a Chroma collection, searched by text or by history.

Storage
    One Chroma collection per catalog, cosine space, embedded ``PersistentClient`` at
    ``settings.chroma_path`` or ``HttpClient`` when ``settings.chroma_url`` is set. genrec always
    computes the vectors itself (:class:`genrec.embeddings.Embedder`); Chroma's own embedding
    function, which downloads a model, is never used.

    Each record: id = item id, document = ``Item.embedding_text()``, metadata = the item's fields
    so ``where`` filters work and the :class:`Item` can be rebuilt:

    ===============  ===========================================================
    ``title``        str
    ``category``     str ("" when none)
    ``description``  str (only when non-empty)
    ``tags``         list of str (only when non-empty): ``{"tags": {"$contains": "Comedy"}}``
    ``popularity``   float (only when known): ``{"popularity": {"$gte": 100}}``
    attributes       flattened to top-level keys, e.g. ``{"year": {"$lt": 1980}}``
    ``_hash``        content hash of the item and embedding model (skip unchanged on re-ingest)
    ``_attrs``       the attribute names, so attributes come back as attributes
    ===============  ===========================================================

    Collection metadata ``genrec_complete`` is false while an upsert is writing and true only
    after the last batch landed, so an interrupted ingest never looks complete.

History search
    A history (oldest first) becomes one query vector: the normalised sum of the history items'
    vectors, item ``i`` of ``n`` weighted ``0.5 ** ((n - 1 - i) / history_half_life)``: the most
    recent item weighs 1, one ``history_half_life`` (3) items earlier weighs 1/2, and so on. With a
    text as well, the query is the normalised sum of the text vector and that history vector
    (equal weight). History items and excluded IDs are never returned (the query over-fetches by
    their number, then filters).
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from functools import cached_property
from typing import Any
from urllib.parse import urlparse

import numpy as np
from pydantic import BaseModel, Field

from genrec.catalog import Item
from genrec.embeddings import Embedder
from genrec.errors import ConfigError, GenrecError, InvalidRequest, NotFound
from genrec.folder_lock import FolderLock
from genrec.settings import Settings

_RESERVED = frozenset({"title", "category", "description", "tags", "popularity", "_hash", "_attrs"})
_COLLECTION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]$")
_ARTICLE_RE = re.compile(r"^(.*), (the|a|an|les|la|le|il|der|die|das|el)$")
_YEAR_SUFFIX_RE = re.compile(r"\s*\(\d{4}\)\s*$")


class SearchHit(BaseModel):
    item: Item
    score: float  # 1 - cosine distance: higher is more similar


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

    @property
    def written(self) -> int:
        return self.added + self.updated

    @property
    def items_per_s(self) -> float:
        return self.total / self.seconds if self.seconds > 0 else 0.0


def validate_where(where: Any, param: str = "where") -> dict | None:
    """Check a Chroma ``where`` filter up front so a bad one is a 400 naming ``param``."""
    if where is None:
        return None
    if not isinstance(where, dict) or not where:
        raise InvalidRequest(f"{param} must be a non-empty JSON object", param=param)
    from chromadb.api.types import validate_where as chroma_validate

    try:
        chroma_validate(where)
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(f"bad {param}: {exc}", param=param) from exc
    return where


def item_hash(item: Item, model_id: str) -> str:
    payload = json.dumps([model_id, item.model_dump(mode="json")], sort_keys=True)
    return hashlib.sha1(payload.encode()).hexdigest()


def item_to_metadata(item: Item, content_hash: str) -> dict[str, Any]:
    md: dict[str, Any] = {"title": item.title, "category": item.category, "_hash": content_hash}
    if item.description:
        md["description"] = item.description
    if item.tags:
        md["tags"] = list(item.tags)
    if item.popularity is not None:
        md["popularity"] = float(item.popularity)
    if item.attributes:
        md["_attrs"] = list(item.attributes)
        for key, value in item.attributes.items():
            md[_attr_key(key)] = value
    return md


def item_from_metadata(item_id: str, md: dict[str, Any]) -> Item:
    attributes = {
        name: md[_attr_key(name)] for name in md.get("_attrs") or () if _attr_key(name) in md
    }
    return Item(
        id=item_id,
        title=md["title"],
        description=md.get("description", ""),
        category=md.get("category", ""),
        tags=list(md.get("tags") or []),
        attributes=attributes,
        popularity=md.get("popularity"),
    )


def _attr_key(name: str) -> str:
    return f"attr_{name}" if name in _RESERVED else name


def normalize_title(title: str) -> str:
    """``"Godfather, The (1972)"`` and ``"the godfather"`` -> ``"the godfather"``."""
    t = _YEAR_SUFFIX_RE.sub("", " ".join(title.lower().split()))
    m = _ARTICLE_RE.match(t)
    return f"{m.group(2)} {m.group(1)}" if m else t


class CatalogIndex:
    """A catalog in a Chroma collection. Thread-safe for searching; open it once and share it."""

    history_half_life = 3.0  # items; see the module docstring

    def __init__(
        self, settings: Settings, collection: str | None = None, embedder: Embedder | None = None
    ):
        self.settings = settings
        self.name = collection or settings.collection
        if not _COLLECTION_RE.match(self.name):
            raise InvalidRequest(
                f"bad collection name {self.name!r}: use 3-512 characters from "
                f"[A-Za-z0-9._-], starting and ending with a letter or digit",
                param="collection",
            )
        self.embedder = embedder or Embedder(settings)
        self._lock = threading.Lock()
        self._col: Any = None
        self._titles: dict[str, list[str]] | None = None  # normalised title -> ids
        self._exact: dict[str, list[str]] | None = None  # lower-cased title -> ids
        self._items: dict[str, Item] | None = None  # the mirror (see _mirror)
        self._stamp: Any = None  # the collection's genrec_written when those caches were filled
        self._checked = 0.0  # time.monotonic() of the last comparison of that stamp
        self._generation = 0  # bumped whenever those caches are dropped
        self._text_cache: dict[str, np.ndarray] = {}
        self._folder_lock: FolderLock | None = None  # embedded Chroma only (genrec.folder_lock)

    # ------------------------------------------------------------------ Chroma plumbing

    @cached_property
    def client(self) -> Any:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        chroma_settings = ChromaSettings(anonymized_telemetry=False)
        url = self.settings.chroma_url
        if not url:
            self._folder_lock = FolderLock.open_shared(self.settings.chroma_path)
            return chromadb.PersistentClient(
                path=str(self.settings.chroma_path), settings=chroma_settings
            )
        parsed = urlparse(url if "://" in url else f"http://{url}")
        try:
            return chromadb.HttpClient(
                host=parsed.hostname or "127.0.0.1",
                port=parsed.port or (443 if parsed.scheme == "https" else 8000),
                ssl=parsed.scheme == "https",
                settings=chroma_settings,
            )
        except Exception as exc:  # noqa: BLE001 - chromadb raises bare ValueErrors here
            raise ConfigError(
                f"cannot reach the Chroma server at {url} ({exc}); start it with "
                f"`chroma run --path DIR --port N` or unset GENREC_CHROMA_URL"
            ) from exc

    def _collection(self, create: bool = False) -> Any:
        if self._col is not None:
            return self._col
        with self._lock:
            if self._col is None:
                col = self._open(create)
                if col is None:
                    return None
                self._check_model(col)
                self._col = col
        return self._col

    def _open(self, create: bool) -> Any:
        from chromadb.errors import NotFoundError

        try:
            return self.client.get_collection(self.name, embedding_function=None)
        except NotFoundError:
            if not create:
                return None
        return self.client.get_or_create_collection(
            self.name,
            configuration={"hnsw": {"space": "cosine"}},
            metadata={"genrec_embedding_model": self.embedder.model_id, "genrec_complete": False},
            embedding_function=None,
        )

    def _check_model(self, col: Any) -> None:
        stored = (col.metadata or {}).get("genrec_embedding_model")
        if stored and stored != self.embedder.model_id:
            raise ConfigError(
                f"collection {self.name!r} was embedded with {stored}, not "
                f"{self.embedder.model_id}; use that embedding model or another --collection"
            )

    def _require(self) -> Any:
        col = self._collection()
        if col is None:
            raise NotFound(
                f"collection {self.name!r} does not exist; run `genrec ingest --dataset ml-100k` "
                f"or `genrec ingest FILE --collection {self.name}` first",
                param="collection",
            )
        return col

    def exists(self) -> bool:
        return self._collection() is not None

    @property
    def metadata(self) -> dict[str, Any]:
        col = self._collection()
        if col is None:
            return {}
        # Re-read: another process (or server client) may have changed it.
        return dict(self.client.get_collection(self.name, embedding_function=None).metadata or {})

    def set_metadata(self, **values: Any) -> None:
        """Merge ``values`` into the collection metadata (Chroma replaces it whole)."""
        with self._writing():
            col = self._collection(create=True)
            merged = {**self.metadata, **values}
            col.modify(metadata={k: v for k, v in merged.items() if v is not None})

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Hold an embedded Chroma folder exclusively while writing (see genrec.folder_lock); a
        Chroma server orders writes itself."""
        self.client  # noqa: B018 - opening the folder takes its shared lock first
        if self._folder_lock is None:
            yield
        else:
            with self._folder_lock.exclusive():
                yield

    @property
    def complete(self) -> bool:
        return bool(self.metadata.get("genrec_complete"))

    def drop(self) -> None:
        """Delete the collection (used by `genrec ingest --recreate` and benchmarks)."""
        from chromadb.errors import NotFoundError

        with self._writing(), self._lock:
            try:
                self.client.delete_collection(self.name)
            except (NotFoundError, ValueError):
                pass
            self._col = None
        self._forget()

    @property
    def batch_size(self) -> int:
        return max(1, min(self.settings.ingest_batch_size, self.client.get_max_batch_size()))

    # ------------------------------------------------------------------ writing

    def stored_hashes(self, ids: Sequence[str]) -> dict[str, str]:
        col = self._collection()
        if col is None:
            return {}
        out: dict[str, str] = {}
        for start in range(0, len(ids), self.batch_size):
            got = col.get(ids=list(ids[start : start + self.batch_size]), include=["metadatas"])
            for item_id, md in zip(got["ids"], got["metadatas"], strict=True):
                out[item_id] = (md or {}).get("_hash", "")
        return out

    def upsert(
        self, items: Iterable[Item], *, progress: bool = True, source: str = ""
    ) -> IngestReport:
        """Embed and write the items that are new or changed; unchanged ones cost nothing.

        The collection is marked incomplete before the first write and complete after the last,
        so a crash half-way leaves it visibly incomplete; running again finishes the job.
        """
        started = time.perf_counter()
        unique: dict[str, Item] = {}
        for item in items:
            unique[item.id] = item  # the last version of an id wins
        model_id = self.embedder.model_id
        hashes = {item_id: item_hash(item, model_id) for item_id, item in unique.items()}
        digest = catalog_digest(hashes)
        meta = self.metadata
        if meta.get("genrec_complete") and meta.get("genrec_digest") == digest:
            stored = hashes  # this exact catalog was written completely before
        else:
            stored = self.stored_hashes(list(unique))
        todo = [item for item_id, item in unique.items() if stored.get(item_id) != hashes[item_id]]
        report = IngestReport(collection=self.name, source=source, total=len(unique))
        report.unchanged = len(unique) - len(todo)
        report.added = sum(1 for item in todo if item.id not in stored)
        report.updated = len(todo) - report.added
        if todo or not meta.get("genrec_complete") or meta.get("genrec_digest") != digest:
            with self._writing():
                self._write(todo, hashes, progress=progress, source=source)
                self.set_metadata(
                    genrec_complete=True,
                    genrec_source=source or None,
                    genrec_digest=digest,
                    genrec_embedding_model=model_id,
                    # readers in other processes drop their caches when this moves (_revalidate)
                    genrec_written=time.time_ns() if todo else meta.get("genrec_written"),
                )
            self._forget()
        # else: this exact catalog is there, complete: nothing to write (and no lock to take)
        report.complete = True
        report.seconds = time.perf_counter() - started
        return report

    def _write(
        self, todo: list[Item], hashes: dict[str, str], *, progress: bool, source: str
    ) -> None:
        """Embed and upsert ``todo`` in batches, the collection marked incomplete meanwhile."""
        from tqdm import tqdm

        col = self._collection(create=True)
        self.set_metadata(genrec_complete=False, genrec_source=source or None)
        with (
            tqdm(
                total=len(todo),
                desc=f"ingest {self.name}",
                unit="item",
                file=sys.stderr,
                disable=not progress or not todo,
            ) as bar,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="chroma-write") as pool,
        ):
            # Chroma writes batch i while the model embeds batch i+1; one write in flight at most.
            pending: Future | None = None
            pending_n = 0
            for start in range(0, len(todo), self.batch_size):
                batch = todo[start : start + self.batch_size]
                texts = [item.embedding_text() for item in batch]
                vectors = self.embedder.encode(texts)
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

    def ids(self) -> list[str]:
        col = self._collection()
        if col is None:
            return []
        out: list[str] = []
        page = 5000
        while True:
            got = col.get(include=[], limit=page, offset=len(out))
            out.extend(got["ids"])
            if len(got["ids"]) < page:
                return out

    def delete(self, ids: Sequence[str]) -> None:
        col = self._collection()
        if col is None or not ids:
            return
        with self._writing():
            self.set_metadata(genrec_digest=None)  # the stored digest no longer fits the contents
            for start in range(0, len(ids), self.batch_size):
                col.delete(ids=list(ids[start : start + self.batch_size]))
            self.set_metadata(genrec_written=time.time_ns())
        self._forget()

    # ------------------------------------------------------------------ reading

    def count(self) -> int:
        col = self._collection()
        return 0 if col is None else int(col.count())

    def get(self, ids: Sequence[str]) -> list[Item]:
        """The items with these IDs, in the order asked; unknown IDs are left out."""
        col = self._collection()
        if col is None or not ids:
            return []
        found = self._items_by_id(col, list(dict.fromkeys(str(i) for i in ids)))
        return [found[i] for i in (str(i) for i in ids) if i in found]

    def all_items(self) -> list[Item]:
        col = self._require()
        items: list[Item] = []
        page = 5000
        while True:
            got = col.get(include=["metadatas"], limit=page, offset=len(items))
            items += [
                item_from_metadata(i, m) for i, m in zip(got["ids"], got["metadatas"], strict=True)
            ]
            if len(got["ids"]) < page:
                return items

    def resolve(self, ref: str) -> Item | None:
        """An item by ID, else by exact title (case-insensitive), else by normalised title
        (year suffix and trailing article ignored: "The Godfather" finds "Godfather, The").
        Several items with one title: the most popular wins."""
        ref = str(ref).strip()
        if not ref:
            return None
        hit = self.get([ref])
        if hit:
            return hit[0]
        exact, normal = self._title_maps()
        ids = exact.get(ref.lower()) or normal.get(normalize_title(ref))
        if not ids:
            return None
        hit = self.get(ids[:1])
        return hit[0] if hit else None

    def _title_maps(self) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        self._revalidate()
        with self._lock:
            if self._exact is not None and self._titles is not None:
                return self._exact, self._titles
            generation = self._generation
        items = list(self._mirror().values()) or (self.all_items() if self.exists() else [])
        items.sort(key=lambda it: -(it.popularity or 0.0))
        exact: dict[str, list[str]] = {}
        normal: dict[str, list[str]] = {}
        for item in items:
            exact.setdefault(item.title.lower(), []).append(item.id)
            normal.setdefault(normalize_title(item.title), []).append(item.id)
        with self._lock:
            if generation == self._generation:
                self._exact, self._titles = exact, normal
        return exact, normal

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self.embedder.embed(texts)

    def warm(self) -> None:
        """Load the embedding model, the item mirror and the title maps now, so that the first
        search does not pay for them."""
        self.embedder.encode(["warm up"])
        if self.exists():
            self._title_maps()

    def text_vector(self, text: str) -> np.ndarray:
        """One query's vector, remembered for the last few hundred distinct queries."""
        vector = self._text_cache.get(text)
        if vector is None:
            vector = self.embedder.encode([text])[0]
            with self._lock:
                if len(self._text_cache) >= 512:
                    self._text_cache.pop(next(iter(self._text_cache)))
                self._text_cache[text] = vector
        return vector

    def vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors by ID (unknown IDs left out)."""
        col = self._collection()
        if col is None or not ids:
            return {}
        got = col.get(ids=list(dict.fromkeys(ids)), include=["embeddings"])
        return {
            i: np.asarray(e, dtype=np.float32)
            for i, e in zip(got["ids"], got["embeddings"], strict=True)
        }

    def history_vector(self, history: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        """The decayed, normalised profile of a history (see the module docstring), and the
        history as item IDs. Entries may be IDs or exact titles; unknown ones are a 400."""
        ids = [str(h).strip() for h in history]
        vectors = self.vectors(ids)
        for pos, ref in enumerate(ids):
            if ref not in vectors and (item := self.resolve(ref)) is not None:
                ids[pos] = item.id
        if late := [i for i in ids if i not in vectors]:
            vectors.update(self.vectors(late))
        missing = [history[pos] for pos, i in enumerate(ids) if i not in vectors]
        if missing:
            shown = ", ".join(repr(m) for m in missing[:5])
            raise InvalidRequest(
                f"history has {len(missing)} unknown item(s): {shown}; use item IDs or exact "
                f"titles from collection {self.name!r}",
                param="history",
            )
        n = len(ids)
        weights = 0.5 ** ((n - 1 - np.arange(n)) / self.history_half_life)
        profile = (weights[:, None] * np.stack([vectors[i] for i in ids])).sum(axis=0)
        return _unit(profile), ids

    def search(
        self,
        text: str | None = None,
        *,
        history: Sequence[str] = (),
        k: int = 20,
        where: dict | None = None,
        exclude: Sequence[str] = (),
    ) -> list[SearchHit]:
        """Top-k items for a text, a history (oldest first), or both; see the module docstring."""
        if not isinstance(k, int) or k < 1:
            raise InvalidRequest("k must be a positive integer", param="k")
        validate_where(where)
        text = (text or "").strip()
        if not text and not history:
            raise InvalidRequest("give a query text or a history of item IDs", param="query")
        self._require()
        vector: np.ndarray | None = None
        history_ids: list[str] = []
        if history:
            vector, history_ids = self.history_vector(history)
        if text:
            text_vec = self.text_vector(text)
            vector = text_vec if vector is None else _unit(vector + text_vec)
        assert vector is not None
        return self.search_vector(vector, k=k, where=where, exclude=[*exclude, *history_ids])

    def search_vector(
        self,
        vector: Sequence[float] | np.ndarray,
        *,
        k: int,
        where: dict | None = None,
        exclude: Sequence[str] = (),
    ) -> list[SearchHit]:
        """Nearest items to a vector, honouring ``where``, never returning ``exclude``."""
        if k < 1:
            raise InvalidRequest("k must be a positive integer", param="k")
        validate_where(where)
        col = self._require()
        banned = {str(e) for e in exclude}
        try:
            res = col.query(
                query_embeddings=[np.asarray(vector, dtype=np.float32)],
                n_results=k + len(banned),
                where=where,
                include=["distances"],  # the items come from _items_by_id
            )
        except (ValueError, TypeError) as exc:
            raise InvalidRequest(f"bad where: {exc}", param="where") from exc
        except GenrecError:
            raise
        except Exception as exc:  # chromadb's errors, e.g. a type mismatch inside where
            if where is not None and "where" in str(exc).lower():
                raise InvalidRequest(f"bad where: {exc}", param="where") from exc
            raise
        found = [
            (item_id, dist)
            for item_id, dist in zip(res["ids"][0], res["distances"][0], strict=True)
            if item_id not in banned
        ][:k]
        items = self._items_by_id(col, [item_id for item_id, _ in found])
        return [
            SearchHit(item=items[item_id], score=1.0 - float(dist))
            for item_id, dist in found
            if item_id in items  # one deleted between the query and the lookup is left out
        ]

    # ------------------------------------------------------------------ in-process caches
    # The item fields of catalogs up to ``max_mirrored`` items are mirrored in this process
    # (loaded on first use; 17 MB for ml-latest-small): fetching 20 items' metadata from Chroma
    # costs as much as the nearest-neighbour query itself, so a search asks Chroma for IDs and
    # distances only. Every genrec write stamps the collection (``genrec_written``); readers
    # compare the stamp at most once per ``freshness_s`` and drop the mirror and the title maps
    # when it moved, so another process's writes show within that time. (Writes made around
    # genrec, straight through Chroma, are not seen; bigger catalogs are read from Chroma.)

    freshness_s = 1.0
    max_mirrored = 50_000  # items; about 1.7 KB each in memory (ml-latest-small)

    def _forget(self) -> None:
        with self._lock:
            self._drop_caches()
            self._checked = 0.0

    def _drop_caches(self) -> None:  # with self._lock held
        self._titles = self._exact = self._items = None
        self._generation += 1  # a cache being built from older data is not kept

    def _revalidate(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.freshness_s:
            return
        stamp = self.metadata.get("genrec_written")
        with self._lock:
            if stamp != self._stamp:
                self._drop_caches()
                self._stamp = stamp
            self._checked = now

    def _mirror(self) -> dict[str, Item]:
        """All items by ID ({} for a catalog too big to mirror, or none)."""
        self._revalidate()
        with self._lock:
            if self._items is not None:
                return self._items
            generation = self._generation
        size = self.count()  # 0 when the collection does not exist
        items = {it.id: it for it in self.all_items()} if 0 < size <= self.max_mirrored else {}
        with self._lock:
            if generation == self._generation:
                self._items = items
        return items

    def _items_by_id(self, col: Any, ids: Sequence[str]) -> dict[str, Item]:
        mirror = self._mirror()
        if all(item_id in mirror for item_id in ids):
            return mirror
        got = col.get(ids=list(ids), include=["metadatas"])
        return {
            item_id: item_from_metadata(item_id, md)
            for item_id, md in zip(got["ids"], got["metadatas"], strict=True)
        }


def catalog_digest(hashes: dict[str, str]) -> str:
    h = hashlib.sha1()
    for item_id in sorted(hashes):
        h.update(f"{item_id}\0{hashes[item_id]}\n".encode())
    return h.hexdigest()


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v
