"""The in-process mirror of a catalog's items, and its title maps.

The item fields of catalogs up to ``max_mirrored`` items are mirrored in this process (loaded on
first use; 17 MB for ml-latest-small): fetching 20 items' metadata from Chroma costs as much as
the nearest-neighbour query itself, so a search asks Chroma for IDs and distances only. Every
genrec write stamps the collection (``genrec_written``); readers compare the stamp at most once
per ``freshness_s`` and drop the mirror and the title maps when it moved, so another process's
writes show within that time. (Writes made around genrec, straight through Chroma, are not seen;
bigger catalogs are read from Chroma.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from genrec.catalog import Item
from genrec.index.store import ChromaStore
from genrec.titles import title_key


class ItemMirror:
    freshness_s = 1.0
    max_mirrored = 50_000  # items; about 1.7 KB each in memory (ml-latest-small)

    def __init__(self, store: ChromaStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._items: dict[str, Item] | None = None
        self._exact: dict[str, list[str]] | None = None  # lower-cased title -> ids
        self._titles: dict[str, list[str]] | None = None  # normalised title -> ids
        self._stamp: Any = None  # the collection's genrec_written when the caches were filled
        self._checked = 0.0  # time.monotonic() of the last comparison of that stamp
        self._generation = 0  # bumped whenever the caches are dropped

    def forget(self) -> None:
        """Drop everything now (this process just wrote)."""
        with self._lock:
            self._drop()
            self._checked = 0.0

    def _drop(self) -> None:  # with self._lock held
        self._items = self._exact = self._titles = None
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
        """The items with these IDs (unknown ones left out): from the mirror when it has them
        all, else from Chroma."""
        mirror = self.items()
        if all(item_id in mirror for item_id in ids):
            return mirror
        return self.store.items(ids)

    def by_title(self, ref: str) -> str | None:
        """The ID of the item with this exact (case-insensitive) or normalised title; several
        items with one title: the most popular."""
        exact, normal = self.title_maps()
        key = title_key(ref)
        ids = exact.get(ref.lower()) or (normal.get(key) if key else None)
        return ids[0] if ids else None

    def title_maps(self) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        self._revalidate()
        with self._lock:
            if self._exact is not None and self._titles is not None:
                return self._exact, self._titles
            generation = self._generation
        items = list(self.items().values())
        if not items and self.store.exists():
            items = self.store.all_items()
        items.sort(key=lambda it: -(it.popularity or 0.0))
        exact: dict[str, list[str]] = {}
        normal: dict[str, list[str]] = {}
        for item in items:
            exact.setdefault(item.title.lower(), []).append(item.id)
            if key := title_key(item.title):  # a title of punctuation only has no key
                normal.setdefault(key, []).append(item.id)
        with self._lock:
            if generation == self._generation:
                self._exact, self._titles = exact, normal
        return exact, normal
