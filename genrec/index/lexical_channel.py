"""The lexical channel of a collection's text search: whether it is on, keeping its BM25 index
(genrec.index.lexical) in step with the collection, and searching it.

A collection has the channel when its metadata says ``genrec_lexical`` (ingest decides, see
``settings.lexical``: ``auto`` turns it on for Chinese, Japanese or Korean text) and it is
complete; ``settings.lexical = "off"`` turns it off for searching. The metadata is read again at
most once per the mirror's freshness (a second), like the item mirror.

How a text search fuses it with the dense channel (genrec.index.catalog_index): a weighted sum of
each channel's min-max normalised scores over its top ``fusion_pool``, dense weighing
``dense_weight``. Chosen on the zh-shop validation queries (32; NDCG@10): the weighted sum 0.984
for every dense weight from 0.6 to 0.8 (0.7 taken, the middle), dense alone 0.979, lexical alone
0.855, reciprocal rank fusion 0.960-0.979 (dense weight 0.5-0.9). A weighted sum keeps how far
ahead a channel's top items are (e5's cosines bunch, and min-max spreads them); RRF flattens that
to ranks, so a long list of weak BM25 matches ("运动" in 运动短裤 for 运动鞋) pulls as hard as a
confident dense list.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from genrec.index.lexical import LexicalIndex
from genrec.index.mirror import ItemMirror
from genrec.index.store import ChromaStore
from genrec.settings import Settings


class LexicalChannel:
    def __init__(
        self, settings: Settings, store: ChromaStore, mirror: ItemMirror, index: LexicalIndex
    ) -> None:
        self.settings = settings
        self.store = store
        self.mirror = mirror  # its freshness is the channel's too
        self.index = index
        self._state: tuple[float, bool, str] = (-1e9, False, "")  # checked, on, digest

    def wanted(self, languages: dict[str, int]) -> bool:
        """Whether this collection should have a lexical index, given its catalog's scripts."""
        mode = self.settings.lexical
        if mode != "auto":
            return mode == "on"
        if self.store.metadata.get("genrec_lexical"):
            return True
        return any(lang in languages for lang in ("zh", "ja", "ko"))

    def enabled(self) -> bool:
        """Whether text searches fuse the lexical channel (the collection has one and the
        settings allow it)."""
        if self.settings.lexical == "off":
            return False
        checked, on, digest = self._state
        now = time.monotonic()
        if now - checked >= self.mirror.freshness_s:
            meta = self.store.metadata
            on = bool(meta.get("genrec_lexical")) and bool(meta.get("genrec_complete"))
            digest = str(meta.get("genrec_digest"))
            self._state = (now, on, digest)
        return on

    def refresh(self) -> None:
        """Bring the lexical index in step with the collection now (the writer calls this)."""
        self._state = (-1e9, False, "")
        if self.enabled():
            self.index.ensure(self._state[2], self.store.all_items)

    def search(
        self, text: str, k: int, where: dict | None, exclude: Sequence[str], param: str
    ) -> list[tuple[str, float]]:
        """BM25 top-k (ID, score) for ``text``, honouring ``where``, never returning
        ``exclude``; builds or repairs the index when the catalog moved on."""
        self.enabled()
        loaded = self.index.ensure(self._state[2], self.store.all_items)
        allowed = self.store.ids_where(where, param=param) if where else None
        return self.index.search(loaded, text, k, allowed=allowed, banned=set(exclude))
