"""What a process keeps of a catalog's items between requests, and the title lookup.

Fetching 20 items' metadata from Chroma costs about as much as the nearest-neighbour query
itself, so a search asks Chroma for IDs and distances only and reads item fields here:

- catalogs up to ``max_mirrored`` items are mirrored whole (loaded on first use; 17 MB for
  ml-latest-small's 9,742 items, about 1.7 KB an item);
- bigger ones keep the last ``cache_items`` items read (least recently used out; popular items
  stay), and a miss is one read of the summary's records (below) or one Chroma ``get`` for all
  of a request's missing IDs. Mirroring 300,000 items whole would cost about 500 MB in every
  replica.

Every catalog keeps the last ``cache_vectors`` items' vectors read (a history's profile and the
explanations read them; 20 from Chroma cost ~0.9 ms at 300,000 items). A big catalog with records
(below) maps all its vectors from a file instead: written once per catalog version beside the
summary (~10 s at 300,000 items), memory-mapped read-only, so a replica reads any item's vector
without Chroma and the replicas of one machine share the pages (460 MB at 300,000 x 384).

Every catalog also has a compact :class:`Summary`, built by one pass over the collection: its IDs
most popular first (what a request with nothing to go on is served from, genrec.retrieval.popular)
and two sorted arrays of 64-bit title hashes (exact lower-cased title, normalised title) pointing
into that order, so a history given by titles resolves without a title dict per replica. At
300,000 items it holds 25.5 MB; reading every item's metadata to build it takes minutes there, so
a big catalog's summary is kept in ``GENREC_HOME/summaries/`` per catalog version (the
``genrec_written`` stamp) and the next process (a replica starting) loads it.

A big catalog's summary also carries :class:`Records`: every item's metadata as compact JSON in
one byte array (no Python object per item; 300,000 short-titled items take about 60 MB), found by
a sorted array of ID hashes. While a summary is held, item lookups read it and never Chroma: at
300,000 items a Chroma ``get`` of 20 items' metadata costs about 5 ms, 0.2 ms an item, more than
the nearest-neighbour query, and a hybrid request needs hundreds. Catalogs whose metadata would
pass ``records_budget`` bytes keep only the LRU cache.

Every genrec write stamps the collection (``genrec_written``); readers compare the stamp at most
once per ``freshness_s`` and drop everything here when it moved, so another process's writes show
within that time. (Writes made around genrec, straight through Chroma, are not seen.)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genrec.data.item import Item, id_key
from genrec.index.store import ChromaStore, item_from_metadata
from genrec.titles import title_key

_SCAN_PAGE = 5000


def title_hash(text: str) -> int:
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


@dataclass(frozen=True)
class Records:
    """Every item's Chroma metadata as JSON, row r at ``blob[offsets[r]:offsets[r + 1]]`` (rows
    in the summary's order), and the sorted hashes of the IDs pointing at rows."""

    blob: np.ndarray  # uint8
    offsets: np.ndarray  # int64, one more than rows
    keys: tuple[np.ndarray, np.ndarray]  # sorted ID hashes, rows

    @classmethod
    def build(cls, ids: list[str], metadata: list[bytes]) -> Records:
        sizes = np.fromiter((len(m) for m in metadata), np.int64, len(metadata))
        offsets = np.zeros(len(metadata) + 1, np.int64)
        np.cumsum(sizes, out=offsets[1:])
        blob = np.frombuffer(b"".join(metadata), np.uint8)
        hashes = np.fromiter((title_hash(i) for i in ids), np.int64, len(ids))
        return cls(blob, offsets, _table(hashes))

    def find(self, ids: list[str], wanted: Sequence[str]) -> list[tuple[str, int]]:
        """(id, row) of the ``wanted`` IDs this catalog version holds (``ids``: the summary's
        rows), in the order asked."""
        keys, rows = self.keys
        hashes = np.fromiter((title_hash(i) for i in wanted), np.int64, len(wanted))
        at = np.searchsorted(keys, hashes)
        out: list[tuple[str, int]] = []
        for item_id, h, i in zip(wanted, hashes, at, strict=True):
            while i < len(keys) and keys[i] == h:  # a hash shared by two IDs: check the ID
                r = int(rows[i])
                if ids[r] == item_id:
                    out.append((item_id, r))
                    break
                i += 1
        return out

    def items(self, ids: list[str], wanted: Sequence[str]) -> dict[str, Item]:
        """The ``wanted`` items this catalog version holds (``ids``: the summary's rows)."""
        out: dict[str, Item] = {}
        for item_id, r in self.find(ids, wanted):
            raw = self.blob[self.offsets[r] : self.offsets[r + 1]].tobytes()
            out[item_id] = item_from_metadata(item_id, json.loads(raw))
        return out

    @property
    def nbytes(self) -> int:
        return self.blob.nbytes + self.offsets.nbytes + sum(a.nbytes for a in self.keys)


@dataclass(frozen=True)
class Summary:
    """A catalog's IDs, most popular first (ties by ID), its title hashes (see above) and, for a
    big catalog whose metadata fits ``ItemMirror.records_budget``, its :class:`Records`."""

    ids: list[str]
    exact: tuple[np.ndarray, np.ndarray]  # sorted hashes of title.lower(), rows into ids
    normal: tuple[np.ndarray, np.ndarray]  # the same for title_key(title)
    records: Records | None = None
    # with records: every item's vector, row r for ids[r], float32, memory-mapped from a file
    # kept beside the summary (read-only; pages are shared by the replicas of one machine)
    vectors: np.ndarray | None = None

    @classmethod
    def build(cls, rows: list[tuple[str, str, float, bytes | None]]) -> Summary:
        """From (id, title, popularity, metadata JSON or None) of every item; records only when
        every row has its metadata."""
        rows.sort(key=lambda r: (-r[2], id_key(r[0])))
        exact = np.fromiter((title_hash(r[1].lower()) for r in rows), np.int64, len(rows))
        normal = np.fromiter((title_hash(title_key(r[1]) or "") for r in rows), np.int64, len(rows))
        ids = [r[0] for r in rows]
        metadata = [r[3] for r in rows]
        records = None
        if rows and all(m is not None for m in metadata):
            records = Records.build(ids, metadata)  # type: ignore[arg-type]
        return cls(ids, _table(exact), _table(normal), records)

    def rows(self, table: tuple[np.ndarray, np.ndarray], text: str) -> list[int]:
        keys, rows = table
        h = title_hash(text)
        lo, hi = np.searchsorted(keys, h, "left"), np.searchsorted(keys, h, "right")
        return [int(r) for r in rows[lo:hi]]  # most popular first (a stable sort of the rows)

    @property
    def nbytes(self) -> int:
        ids = sum(49 + len(i) + 8 for i in self.ids)  # str objects and the list's pointers
        records = self.records.nbytes if self.records is not None else 0
        return ids + records + sum(a.nbytes for t in (self.exact, self.normal) for a in t)

    def vector_rows(self, wanted: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """(the IDs found, their vectors as rows) from the mapped file (``vectors`` is held)."""
        assert self.records is not None and self.vectors is not None
        found = self.records.find(self.ids, wanted)
        rows = np.fromiter((r for _, r in found), np.int64, len(found))
        return [i for i, _ in found], np.asarray(self.vectors[rows])  # a copy: fancy indexing


def _table(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(hashes, kind="stable").astype(np.int32)
    return hashes[order], order


class ItemMirror:
    freshness_s = 1.0
    max_mirrored = 50_000  # items mirrored whole; see the module docstring
    cache_items = 20_000  # items remembered for bigger catalogs (about 35 MB)
    cache_vectors = 20_000  # recent items' vectors (1.5 KB each at 384 dimensions: 30 MB)
    records_budget = 256 * 2**20  # bytes of metadata JSON a big catalog's summary may carry
    vectors_budget = 2 * 2**30  # bytes of vectors it may keep on disk, memory-mapped

    def __init__(self, store: ChromaStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._items: dict[str, Item] | None = None  # the whole catalog (small ones) or {}
        self._cache: OrderedDict[str, Item] = OrderedDict()  # big catalogs: recently read
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()  # recently fetched
        self._summary: Summary | None = None
        self._stamp: Any = None  # the collection's genrec_written when the caches were filled
        # time.monotonic() of the last comparison of that stamp; -inf: never (monotonic time
        # starts near 0 at boot, so 0.0 would read as "just checked" on a fresh machine)
        self._checked = -math.inf
        self._generation = 0  # bumped whenever the caches are dropped

    def forget(self) -> None:
        """Drop everything now (this process just wrote)."""
        with self._lock:
            self._drop()
            self._checked = -math.inf

    def _drop(self) -> None:  # with self._lock held
        self._items = self._summary = None
        self._cache = OrderedDict()
        self._vectors = OrderedDict()
        self._generation += 1  # a cache being built from older data is not kept

    def _revalidate(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.freshness_s:
            return
        stamp = self.store.metadata.get("genrec_written")
        with self._lock:
            if stamp != self._stamp:
                self._drop()
                self._stamp = stamp
            self._checked = now

    def generation(self) -> int:
        """Moves whenever what was cached from the catalog is dropped (after a revalidation)."""
        self._revalidate()
        return self._generation

    def items(self) -> dict[str, Item]:
        """All items by ID ({} for a catalog too big to mirror, or none)."""
        self._revalidate()
        with self._lock:
            if self._items is not None:
                return self._items
            generation = self._generation
        size = self.store.count()  # 0 when the collection does not exist
        items = (
            {it.id: it for it in self.store.all_items()} if 0 < size <= self.max_mirrored else {}
        )
        with self._lock:
            if generation == self._generation:
                self._items = items
        return items

    def by_id(self, ids: Sequence[str]) -> dict[str, Item]:
        """The items with these IDs (unknown ones left out): from the mirror, or the recent
        items and, for the rest, this catalog version's records or one Chroma fetch (parsing a
        record costs ~20 us, so popular items are kept parsed too)."""
        mirror = self.items()
        if mirror:
            if all(item_id in mirror for item_id in ids):
                return mirror
            return self.store.items(ids)  # written since the mirror was filled
        with self._lock:
            summary = self._summary
        if summary is not None and summary.records is not None:
            records = summary.records
            return self._recent(
                self._cache, self.cache_items, ids, lambda m: records.items(summary.ids, m)
            )
        return self._recent(self._cache, self.cache_items, ids, self.store.items)

    def vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors by ID (unknown IDs left out; read-only arrays): from the summary's
        mapped file while it is held, else recent ones from memory and the rest in one Chroma
        fetch (~0.9 ms for a history's 20 at 300,000 items)."""
        self._revalidate()
        with self._lock:
            summary = self._summary
        if summary is not None and summary.vectors is not None:
            assert summary.records is not None
            # the whole catalog version: an ID not found is not in it (read-only views)
            return {
                i: np.asarray(summary.vectors[r]) for i, r in summary.records.find(summary.ids, ids)
            }
        return self._recent(self._vectors, self.cache_vectors, ids, self._fetch_vectors)

    def vector_rows(self, ids: Sequence[str]) -> tuple[list[str], np.ndarray] | None:
        """(the IDs found, their vectors as rows) for many IDs at once (a filter's items), from
        the summary's mapped file; None when no such file is held (the caller asks Chroma)."""
        self._revalidate()
        with self._lock:
            summary = self._summary
        if summary is None or summary.vectors is None:
            return None
        return summary.vector_rows(ids)

    def _fetch_vectors(self, ids: list[str]) -> dict[str, np.ndarray]:
        fetched = self.store.vectors(ids)
        for v in fetched.values():
            v.flags.writeable = False  # shared by every request that reads it
        return fetched

    def _recent(
        self, cache: OrderedDict[str, Any], size: int, ids: Sequence[str], fetch: Any
    ) -> dict[str, Any]:
        """``ids`` from an LRU ``cache`` of at most ``size`` entries, the missing ones from
        ``fetch(list)`` and remembered (unless the caches were dropped meanwhile)."""
        found: dict[str, Any] = {}
        with self._lock:
            generation = self._generation
            for item_id in ids:
                if (got := cache.get(item_id)) is not None:
                    cache.move_to_end(item_id)
                    found[item_id] = got
        missing = [i for i in dict.fromkeys(ids) if i not in found]
        if missing:
            fetched = fetch(missing)
            found.update(fetched)
            with self._lock:
                if generation == self._generation:
                    cache.update(fetched)
                    while len(cache) > size:
                        cache.popitem(last=False)
        return found

    def summary(self) -> Summary:
        """The catalog's popularity order and title hashes (built on first use, one pass)."""
        self._revalidate()
        with self._lock:
            if self._summary is not None:
                return self._summary
            generation = self._generation
        mirror = self.items()
        if mirror:
            rows = [(it.id, it.title, float(it.popularity or 0.0), None) for it in mirror.values()]
            summary = Summary.build(rows)
        else:  # one pass over all metadata: minutes at 300k, so kept on disk per catalog version
            summary = self._load() or self._save(Summary.build(self._scan()))
            if summary.records is not None:
                summary = dataclasses.replace(summary, vectors=self._mapped_vectors(summary))
        with self._lock:
            if generation == self._generation:
                self._summary = summary
        return summary

    def _file(self) -> Path | None:
        """Where this catalog version's summary is kept (None: no version stamp to key it on)."""
        stamp = self._stamp
        if stamp is None:
            return None
        return self.store.settings.home / "summaries" / f"{self.store.name}-{stamp}.npz"

    def _load(self) -> Summary | None:
        path = self._file()
        if path is None or not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as f:
                records = None
                if "records_blob" in f:
                    records = Records(
                        f["records_blob"],
                        f["records_offsets"],
                        (f["records_keys"], f["records_rows"]),
                    )
                return Summary(
                    [str(i) for i in f["ids"]],
                    (f["exact_keys"], f["exact_rows"]),
                    (f["normal_keys"], f["normal_rows"]),
                    records,
                )
        except (OSError, ValueError, KeyError):
            return None  # unreadable: built again

    def _save(self, summary: Summary) -> Summary:
        path = self._file()
        if path is None:
            return summary
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
            records = summary.records
            extra = {}
            if records is not None:
                extra = {
                    "records_blob": records.blob,
                    "records_offsets": records.offsets,
                    "records_keys": records.keys[0],
                    "records_rows": records.keys[1],
                }
            np.savez(
                tmp,
                ids=np.array(summary.ids),
                exact_keys=summary.exact[0],
                exact_rows=summary.exact[1],
                normal_keys=summary.normal[0],
                normal_rows=summary.normal[1],
                **extra,
            )
            os.replace(tmp, path)  # atomic: a reader sees a whole file or none
        except OSError:
            pass  # a read-only home: each process builds its own
        return summary

    def _mapped_vectors(self, summary: Summary) -> np.ndarray | None:
        """This catalog version's vectors, rows in the summary's order, memory-mapped from
        ``summaries/`` (written by one pass over the collection when missing: ~10 s at 300,000
        items, once per version; older versions' files are removed). None when they would pass
        ``vectors_budget`` or the home cannot hold them: vectors then come from Chroma."""
        npz = self._file()
        if npz is None:
            return None
        # a folder per collection, so that removing other versions' files touches only its own
        path = npz.parent / self.store.name / f"{npz.stem}.vectors.npy"
        try:
            if not path.is_file():
                self._write_vectors(summary, path)
            if path.is_file():
                mapped = np.load(path, mmap_mode="r")
                fits = mapped.nbytes <= self.vectors_budget
                if fits and mapped.ndim == 2 and len(mapped) == len(summary.ids):
                    return mapped
        except (OSError, ValueError):
            pass
        return None

    def _write_vectors(self, summary: Summary, path: Path) -> None:
        assert summary.records is not None
        col = self.store.collection()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp.npy")
        out: np.ndarray | None = None
        filled = np.zeros(len(summary.ids), dtype=bool)
        offset = 0
        try:
            while col is not None:
                got = col.get(include=["embeddings"], limit=_SCAN_PAGE, offset=offset)
                if len(got["ids"]) == 0:
                    break
                page = np.asarray(got["embeddings"], dtype=np.float32)
                if out is None:
                    if len(summary.ids) * page.shape[1] * 4 > self.vectors_budget:
                        return
                    out = np.lib.format.open_memmap(
                        tmp, mode="w+", dtype=np.float32, shape=(len(summary.ids), page.shape[1])
                    )
                at = {item_id: n for n, item_id in enumerate(got["ids"])}
                for item_id, r in summary.records.find(summary.ids, got["ids"]):
                    out[r] = page[at[item_id]]
                    filled[r] = True
                offset += len(got["ids"])
                if len(got["ids"]) < _SCAN_PAGE:
                    break
            if out is None or not filled.all():
                return  # the catalog changed under the pass: Chroma serves vectors meanwhile
            out.flush()
            del out
            os.replace(tmp, path)  # atomic: a reader maps a whole file or none
            for old in path.parent.glob("*.vectors.npy"):
                if old != path:  # another version's (a process mapping it keeps its pages)
                    old.unlink(missing_ok=True)
        finally:
            tmp.unlink(missing_ok=True)

    def _scan(self) -> list[tuple[str, str, float, bytes | None]]:
        """(id, title, popularity, metadata JSON) of every record, a page at a time (no Item
        objects); the JSON is dropped from every row once the total passes the budget."""
        col = self.store.collection()
        rows: list[tuple[str, str, float, bytes | None]] = []
        size, keep = 0, True
        while col is not None:
            got = col.get(include=["metadatas"], limit=_SCAN_PAGE, offset=len(rows))
            for i, md in zip(got["ids"], got["metadatas"], strict=True):
                raw = (
                    json.dumps(md, ensure_ascii=False, separators=(",", ":")).encode()
                    if keep
                    else None
                )
                size += len(raw) if raw is not None else 0
                rows.append((i, str(md.get("title", "")), float(md.get("popularity") or 0.0), raw))
            if keep and size > self.records_budget:
                keep = False
                rows = [(*r[:3], None) for r in rows]
            if len(got["ids"]) < _SCAN_PAGE:
                break
        return rows

    def popular_ids(self) -> list[str]:
        """Every item's ID, most popular first (ties by ID)."""
        return self.summary().ids

    def by_title(self, ref: str) -> str | None:
        """The ID of the item with this exact (case-insensitive) or normalised title; several
        items with one title: the most popular. A hash match is checked against the item."""
        summary = self.summary()
        lowered, key = ref.lower(), title_key(ref)
        for table, text, same in (
            (summary.exact, lowered, lambda it: it.title.lower() == lowered),
            (summary.normal, key, lambda it: title_key(it.title) == key),
        ):
            if not text:
                continue
            ids = [summary.ids[r] for r in summary.rows(table, text)]
            found = self.by_id(ids) if ids else {}
            for item_id in ids:
                if item_id in found and same(found[item_id]):
                    return item_id
        return None

    def describe(self) -> dict[str, Any]:
        """What this process holds for the catalog now (for benchmarks and /health)."""
        with self._lock:
            mapped = self._summary.vectors if self._summary else None
            return {
                "mirrored_items": len(self._items or {}),
                "cached_items": len(self._cache),
                "cached_vectors": len(self._vectors),
                "summary_mib": round(self._summary.nbytes / 2**20, 1) if self._summary else 0,
                "mapped_vectors": 0 if mapped is None else len(mapped),
            }
