"""The IDs of every item matching a filter, for retrievers that rank in process.

One Chroma query per distinct filter, then remembered (the last ``size`` filters), and dropped
with the item mirror when the catalog is written (its write stamp, genrec.index.mirror). Chroma
cannot check a filter on a given list of IDs quickly (``get(ids=..., where=...)`` takes 0.8 s for
512 IDs), so the whole match is fetched once instead of parts of it per request. The vectors of a
filter's items (genrec.index.filtered) are dropped with them.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from genrec.index.filtered import FilteredVectors, store_vectors
from genrec.index.mirror import ItemMirror
from genrec.index.store import ChromaStore


class AllowedIds:
    """Filter -> the IDs it matches, remembered per catalog write; thread-safe."""

    def __init__(self, store: ChromaStore, mirror: ItemMirror, size: int) -> None:
        self.store = store
        self.mirror = mirror
        self.size = size  # distinct filters remembered
        chroma = store_vectors(store)

        def fetch(ids: Sequence[str]) -> tuple[list[str], np.ndarray]:
            # the summary's mapped vectors when held (~0.1 s for 22,800 rows at 300,000 items,
            # against ~0.6 s from Chroma)
            held = mirror.vector_rows(ids)
            return held if held is not None else chroma(ids)

        self.filtered = FilteredVectors(fetch)  # see CatalogIndex.search_vector
        self._lock = threading.Lock()
        self._sets: OrderedDict[str, frozenset[str]] = OrderedDict()
        self._generation = -1

    def get(self, where: dict, *, param: str = "where") -> frozenset[str]:
        key = json.dumps(where, sort_keys=True)
        generation = self.mirror.generation()  # revalidates: a write drops the remembered sets
        with self._lock:
            if self._generation != generation:
                self._sets.clear()
                self.filtered.clear()
                self._generation = generation
            found = self._sets.get(key)
            if found is not None:
                self._sets.move_to_end(key)
                return found
        found = frozenset(self.store.ids_where(where, param=param))
        with self._lock:
            if self._generation == generation:
                self._sets[key] = found
                while len(self._sets) > self.size:
                    self._sets.popitem(last=False)
        return found

    def first_matching(
        self, ranked: Sequence[str], where: dict, n: int, *, param: str = "where"
    ) -> list[str]:
        """The first ``n`` of ``ranked`` (IDs, best first) whose items match ``where``, in that
        order (walks the ranking only as far as it must)."""
        allowed = self.get(where, param=param)
        out: list[str] = []
        for item_id in ranked:
            if item_id in allowed:
                out.append(item_id)
                if len(out) == n:
                    break
        return out
