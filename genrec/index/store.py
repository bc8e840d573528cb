"""Chroma plumbing for one catalog collection: the client, the collection, its metadata, the
write lock, reads by ID and nearest-neighbour queries.

One Chroma collection per catalog, cosine space, embedded ``PersistentClient`` at
``settings.chroma_path`` or ``HttpClient`` when ``settings.chroma_url`` is set. genrec always
computes the vectors itself (:class:`genrec.embeddings.Embedder`); Chroma's own embedding
function, which downloads a model, is never used. How an item is stored in its record (and
its content hash): :mod:`genrec.index.records`.

Collection metadata ``genrec_complete`` is false while an upsert is writing and true only
after the last batch landed, so an interrupted ingest never looks complete. The ``_hash`` of every
record is also kept in a file beside Chroma (:mod:`genrec.index.manifest`), trusted only while it
fits the collection, so a re-ingest need not read them all back.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from typing import Any
from urllib.parse import urlparse

import numpy as np

from genrec.data.item import Item
from genrec.errors import ConfigError, GenrecError, InvalidRequest, NotFound
from genrec.filters import validate_where
from genrec.folder_lock import FolderLock
from genrec.index.batched_queries import BatchedQueries
from genrec.index.manifest import HashManifest
from genrec.index.records import (  # re-exported: importable from here as before
    catalog_digest,
    item_from_metadata,
    item_hash,
    item_to_metadata,
)
from genrec.settings import Settings

_COLLECTION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]$")
_PAGE = 5000


def check_collection_name(name: str) -> str:
    if not _COLLECTION_RE.match(name):
        raise InvalidRequest(
            f"bad collection name {name!r}: use 3-512 characters from "
            f"[A-Za-z0-9._-], starting and ending with a letter or digit",
            param="collection",
        )
    return name


def chroma_client(settings: Settings) -> tuple[Any, FolderLock | None]:
    """A Chroma client for the settings, and the folder's shared lock when it is embedded."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    url = settings.chroma_url
    if not url:
        lock = FolderLock.open_shared(settings.chroma_path)
        client = chromadb.PersistentClient(path=str(settings.chroma_path), settings=chroma_settings)
        return client, lock
    parsed = urlparse(url if "://" in url else f"http://{url}")
    try:
        client = chromadb.HttpClient(
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
    return client, None


class ChromaStore:
    """One collection: opened lazily, checked against the embedding model that must fill it.

    ``space`` is the vector space of a new collection (cosine for catalog text; inner product
    for learned item vectors, genrec.retrieval). ``model_id`` names what made the vectors: a
    collection made by another model is refused, so two embedders never mix in one collection.
    """

    def __init__(
        self, settings: Settings, name: str, model_id: str, *, space: str = "cosine"
    ) -> None:
        self.settings = settings
        self.name = check_collection_name(name)
        self.model_id = model_id
        self.space = space
        self._lock = threading.Lock()
        self._col: Any = None
        self._folder_lock: FolderLock | None = None  # embedded Chroma only (genrec.folder_lock)
        self.manifest = HashManifest(settings.home, self.name)  # the writer's ID -> hash map
        self._batched = BatchedQueries(self._nearest_rows)  # concurrent queries share calls

    @cached_property
    def client(self) -> Any:
        client, self._folder_lock = chroma_client(self.settings)
        return client

    def collection(self, create: bool = False) -> Any:
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
            configuration={"hnsw": {"space": self.space}},
            metadata={"genrec_embedding_model": self.model_id, "genrec_complete": False},
            embedding_function=None,
        )

    def _check_model(self, col: Any) -> None:
        stored = (col.metadata or {}).get("genrec_embedding_model")
        if stored and stored != self.model_id:
            raise ConfigError(
                f"collection {self.name!r} was embedded with {stored}, not "
                f"{self.model_id}: one collection never mixes two embedders; unset "
                f"GENREC_EMBEDDING_MODEL (the collection's own model is then used), set it to "
                f"{stored}, or ingest into another --collection"
            )

    def recorded_model(self) -> str | None:
        """The embedding model recorded in the collection (None: no collection, or none
        recorded), read without the model check, to choose the embedder that must search it."""
        from chromadb.errors import NotFoundError

        try:
            col = self.client.get_collection(self.name, embedding_function=None)
        except NotFoundError:
            return None
        return (col.metadata or {}).get("genrec_embedding_model")

    def require(self) -> Any:
        col = self.collection()
        if col is None:
            raise NotFound(
                f"collection {self.name!r} does not exist; run `genrec ingest --dataset ml-100k` "
                f"or `genrec ingest FILE --collection {self.name}` first",
                param="collection",
            )
        return col

    def exists(self) -> bool:
        return self.collection() is not None

    @property
    def metadata(self) -> dict[str, Any]:
        if self.collection() is None:
            return {}
        # Re-read: another process (or server client) may have changed it.
        return dict(self.client.get_collection(self.name, embedding_function=None).metadata or {})

    def set_metadata(self, **values: Any) -> None:
        """Merge ``values`` into the collection metadata (Chroma replaces it whole)."""
        with self.writing():
            col = self.collection(create=True)
            merged = {**self.metadata, **values}
            col.modify(metadata={k: v for k, v in merged.items() if v is not None})

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Hold an embedded Chroma folder exclusively while writing (see genrec.folder_lock); a
        Chroma server orders writes itself."""
        self.client  # noqa: B018 - opening the folder takes its shared lock first
        if self._folder_lock is None:
            yield
        else:
            with self._folder_lock.exclusive():
                yield

    def drop(self) -> None:
        from chromadb.errors import NotFoundError

        with self.writing(), self._lock:
            try:
                # Records first: chromadb 1.5's delete_collection leaves their metadata rows
                # behind, and a record of a later collection inherits them (measured: an item
                # "T" came back with the tags of the dropped collection's Toy Story)
                col = self.client.get_collection(self.name, embedding_function=None)
                while ids := col.get(include=[], limit=_PAGE)["ids"]:
                    col.delete(ids=ids)
                self.client.delete_collection(self.name)
            except (NotFoundError, ValueError):
                pass
            self._col = None
            self.manifest.drop()

    @property
    def batch_size(self) -> int:
        return max(1, min(self.settings.ingest_batch_size, self.client.get_max_batch_size()))

    def count(self) -> int:
        col = self.collection()
        return 0 if col is None else int(col.count())

    def ids(self) -> list[str]:
        col = self.collection()
        out: list[str] = []
        while col is not None:
            got = col.get(include=[], limit=_PAGE, offset=len(out))
            out.extend(got["ids"])
            if len(got["ids"]) < _PAGE:
                break
        return out

    def ids_where(self, where: dict, *, param: str = "where") -> set[str]:
        """The IDs of every record matching a filter (for retrievers that score in process)."""
        validate_where(where, param=param)
        try:
            return set(self.require().get(where=where, include=[])["ids"])
        except GenrecError:
            raise
        except Exception as exc:  # chromadb's errors, e.g. a type mismatch inside where
            msg = f"bad {param}: the catalog store rejected it: {exc}"
            raise InvalidRequest(msg, param=param) from exc

    # the most neighbours over-fetched for a filtered query (HNSW at 300,000 items: 2,000 cost
    # ~50 ms, 500 ~8 ms on the shared 2-core machine), and the margin over the expected share
    MAX_OVERFETCH = 2000
    MAX_IDS_QUERY = 30_000  # IDs a query restricted to them may list (SQLite's variables)
    OVERFETCH_MARGIN = 1.2

    def _query_allowed(
        self, vector: Sequence[float] | np.ndarray, n: int, allowed: frozenset[str]
    ) -> list[tuple[str, float]] | None:
        """The filtered query by over-fetch (see :meth:`query`); None when it cannot answer."""
        if not allowed:
            return []
        total = self.count()
        share = len(allowed) / max(total, 1)
        fetch = min(total, int(self.OVERFETCH_MARGIN * n / share) + 1)
        while fetch <= self.MAX_OVERFETCH:
            hits = self._batched.query(vector, max(fetch, n))
            found = [(i, d) for i, d in hits if i in allowed]
            if len(found) >= n or fetch >= total:
                return found[:n]
            if fetch == self.MAX_OVERFETCH:
                break
            fetch = min(total, self.MAX_OVERFETCH)  # once more, as wide as allowed
        if len(allowed) > self.MAX_IDS_QUERY:
            return None  # Chroma filters by the where (slow at scale)
        # A filter far from this vector: search among the allowed IDs (0.24 s for 20,000 IDs at
        # 300,000 items, against 1.2 s for Chroma's own where)
        try:
            res = self.require().query(
                query_embeddings=[np.asarray(vector, dtype=np.float32)],
                n_results=min(n, len(allowed)),
                ids=sorted(allowed),
                include=["distances"],
            )
        except Exception:  # noqa: BLE001 - e.g. an allowed ID this collection lacks (learned
            return None  # vectors cover the items seen in training): Chroma's where decides
        return list(zip(res["ids"][0], res["distances"][0], strict=True))

    def collection_id(self) -> str | None:
        """The collection's UUID (None: no collection); a collection made again gets a new one."""
        col = self.collection()
        return None if col is None else str(col.id)

    def all_hashes(self) -> dict[str, str]:
        """ID -> content hash of every record, read from Chroma (the writer's fallback when no
        hash manifest fits the collection; genrec.index.manifest)."""
        col = self.collection()
        out: dict[str, str] = {}
        while col is not None:
            got = col.get(include=["metadatas"], limit=_PAGE, offset=len(out))
            for item_id, md in zip(got["ids"], got["metadatas"], strict=True):
                out[item_id] = (md or {}).get("_hash", "")
            if len(got["ids"]) < _PAGE:
                break
        return out

    def items(self, ids: Sequence[str]) -> dict[str, Item]:
        # In batches: one get of 170,000 IDs is "too many SQL variables" for Chroma's SQLite.
        col, ids, out = self.require(), list(ids), {}
        for start in range(0, len(ids), self.batch_size):
            got = col.get(ids=ids[start : start + self.batch_size], include=["metadatas"])
            out.update(
                (item_id, item_from_metadata(item_id, md))
                for item_id, md in zip(got["ids"], got["metadatas"], strict=True)
            )
        return out

    def all_items(self) -> list[Item]:
        col = self.require()
        items: list[Item] = []
        while True:
            got = col.get(include=["metadatas"], limit=_PAGE, offset=len(items))
            items += [
                item_from_metadata(i, m) for i, m in zip(got["ids"], got["metadatas"], strict=True)
            ]
            if len(got["ids"]) < _PAGE:
                return items

    def vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors by ID (unknown IDs left out)."""
        col = self.collection()
        if col is None or not ids:
            return {}
        ids = list(dict.fromkeys(ids))
        got: dict[str, list] = {"ids": [], "embeddings": []}
        for start in range(0, len(ids), self.batch_size):  # in batches, as items()
            part = col.get(ids=ids[start : start + self.batch_size], include=["embeddings"])
            got["ids"] += list(part["ids"])
            got["embeddings"] += list(part["embeddings"])
        return {
            i: np.asarray(e, dtype=np.float32)
            for i, e in zip(got["ids"], got["embeddings"], strict=True)
        }

    def query(
        self,
        vector: Sequence[float] | np.ndarray,
        n: int,
        where: dict | None,
        *,
        param: str = "where",
        allowed: frozenset[str] | None = None,
    ) -> list[tuple[str, float]]:
        """(id, distance) of the ``n`` nearest records matching ``where``. A filter the store
        rejects is the caller's 400 on ``param``, never a 500.

        ``allowed``: the IDs matching ``where``, when the caller knows them (CatalogIndex.allowed
        remembers them per filter). Then the unfiltered nearest neighbours are over-fetched and
        kept when allowed: Chroma's own filtered query reads the filter's matches from SQLite on
        every call (1.2 s at 300,000 items for a filter one item in 12 passes), the over-fetch
        costs a few ms. A filter too rare for a bounded over-fetch still goes to Chroma."""
        validate_where(where, param=param)
        if where is not None and allowed is not None:
            found = self._query_allowed(vector, n, allowed)
            if found is not None:
                return found
        if where is None:
            return self._batched.query(vector, n)
        col = self.require()
        try:
            res = col.query(
                query_embeddings=[np.asarray(vector, dtype=np.float32)],
                n_results=n,
                where=where,
                include=["distances"],  # item fields come from the mirror
            )
        except GenrecError:
            raise
        except Exception as exc:  # chromadb's errors, e.g. a type mismatch inside where
            msg = f"bad {param}: the catalog store rejected it: {exc}"
            raise InvalidRequest(msg, param=param) from exc
        return list(zip(res["ids"][0], res["distances"][0], strict=True))

    def _nearest_rows(self, vectors: np.ndarray, n: int) -> list[list[tuple[str, float]]]:
        """Unfiltered (id, distance) lists, one per row of ``vectors``, in one Chroma call
        (item fields come from the mirror)."""
        res = self.require().query(query_embeddings=vectors, n_results=n, include=["distances"])
        pairs = zip(res["ids"], res["distances"], strict=True)
        return [list(zip(ids, dists, strict=True)) for ids, dists in pairs]


__all__ = [
    "ChromaStore",
    "catalog_digest",
    "check_collection_name",
    "chroma_client",
    "item_from_metadata",
    "item_hash",
    "item_to_metadata",
]
