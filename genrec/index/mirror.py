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
explanations read them; 20 from Chroma cost ~0.9 ms at 300,000 items), unless its summary maps
them all from a file.

Every catalog also has a compact summary (genrec.index.summary): IDs by popularity and title
hashes, and for a big catalog every item's metadata (records) and vectors (memory-mapped), kept
on disk per catalog version.

Every genrec write stamps the collection (``genrec_written``); readers compare the stamp at most
once per ``freshness_s`` and drop everything here when it moved, so another process's writes show
within that time. (Writes made around genrec, straight through Chroma, are not seen.)
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from genrec.data.item import Item
from genrec.index.store import ChromaStore
from genrec.index.summary import Summary, SummaryFiles, scan
from genrec.titles import title_key


class ItemMirror:
    freshness_s = 1.0
    max_mirrored = 50_000  # items mirrored whole; see the module docstring
    cache_items = 20_000  # items remembered for bigger catalogs (about 35 MB)
    cache_vectors = 20_000  # recent items' vectors (1.5 KB each at 384 dimensions: 30 MB)
    records_budget = 256 * 2**20  # bytes of metadata JSON a big catalog's summary may carry
    vectors_budget = 2 * 2**30  # bytes of vectors it may keep on disk, memory-mapped

    def __init__(self, store: ChromaStore) -> None:
        self.store = store
        self.files = SummaryFiles(store.settings.home, store.name)
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
        elif (stamp := self._stamp) is None:  # no version to key files on: built here
            summary = Summary.build(self._scan())
        else:  # one pass over all metadata: minutes at 300k, so kept on disk per catalog version
            summary = self.files.load(stamp) or self.files.save(stamp, Summary.build(self._scan()))
            if summary.records is not None and self.store.settings.mapped_vectors:
                vectors = self.files.mapped_vectors(
                    stamp, summary, self.store.collection(), self.vectors_budget
                )
                summary = dataclasses.replace(summary, vectors=vectors)
        with self._lock:
            if generation == self._generation:
                self._summary = summary
        return summary

    def _scan(self) -> list[tuple[str, str, float, bytes | None]]:
        return scan(self.store.collection(), self.records_budget)

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
