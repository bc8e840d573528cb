"""The catalog index: items embedded into a Chroma collection (:mod:`.store`), mirrored in
process (:mod:`.mirror`), written by :mod:`.writer`, searched here by text or by history.

History search
    A history (oldest first) becomes one query vector: the normalised sum of the history items'
    vectors, item ``i`` of ``n`` weighted ``0.5 ** ((n - 1 - i) / history_half_life)``: the most
    recent item weighs 1, one ``history_half_life`` (3) items earlier weighs 1/2, and so on. With a
    text as well, the query is the normalised sum of the text vector and that history vector
    (equal weight). History items and excluded IDs are never returned (the query over-fetches by
    their number, then filters).

The embedder
    A collection records the embedding model that filled it; an index opened without an explicit
    model (``GENREC_EMBEDDING_MODEL`` unset, no embedder given) searches with that one, so a
    collection ingested with multilingual-e5-small is searched with it. An explicit model that
    differs is refused (ConfigError): one collection never mixes two embedders. A query in a
    script the model was not built for (Chinese against the English MiniLM) is logged as a
    warning (:meth:`CatalogIndex.language_warning`).

Channels (text search)
    ``dense`` is the vector search above; ``lexical`` is BM25 over the item words, for
    collections that have it (:mod:`.lexical_channel`, where the fusion below was chosen);
    ``fused`` (the default) merges the two: a weighted sum of each channel's min-max normalised
    scores over its top ``fusion_pool`` (0 where absent), dense weighing ``dense_weight``. A
    history-only search is dense only (BM25 needs words).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel

from genrec.data.item import Item
from genrec.embeddings import NAMED_MODELS, Embedder
from genrec.errors import InvalidRequest
from genrec.filters import validate_where
from genrec.index import writer
from genrec.index.allowed import AllowedIds
from genrec.index.lexical import LexicalIndex, weighted_fusion
from genrec.index.lexical_channel import LexicalChannel
from genrec.index.mirror import ItemMirror
from genrec.index.store import ChromaStore
from genrec.index.text_queries import TextQueries
from genrec.settings import Settings

Channel = Literal["fused", "dense", "lexical"]
CHANNELS: tuple[Channel, ...] = ("fused", "dense", "lexical")


class SearchHit(BaseModel):
    item: Item
    score: float  # 1 - cosine distance: higher is more similar


class CatalogIndex:
    """A catalog in a Chroma collection. Thread-safe for searching; open it once and share it."""

    history_half_life = 3.0  # items; see the module docstring
    # each channel's top N that fusion merges: deep enough that an item one channel ranks
    # modestly still meets the other's evidence (chosen on the zh-shop validation queries)
    fusion_pool = 50
    dense_weight = 0.7  # the lexical channel weighs 1 - this; see the module docstring
    # distinct filters whose matching IDs are remembered (allowed); at 300,000 items a filter
    # one item in 12 passes holds 25,000 IDs, about 2 MB
    filter_cache = 64

    def __init__(
        self, settings: Settings, collection: str | None = None, embedder: Embedder | None = None
    ):
        self.settings = settings
        self.store = ChromaStore(settings, collection or settings.collection, "")
        if embedder is None:
            embedder = Embedder(settings, model_path=self._recorded_model())
        self.embedder = embedder
        self.store.model_id = embedder.model_id
        self.name = self.store.name
        self.mirror = ItemMirror(self.store)
        self.lexical = LexicalIndex(settings.home, self.name)
        self._channel = LexicalChannel(settings, self.store, self.mirror, self.lexical)
        self._allowed = AllowedIds(self.store, self.mirror, self.filter_cache)
        self._filtered = self._allowed.filtered  # see search_vector()
        self._texts = TextQueries(embedder, self.name)
        self._count: tuple[int, int] | None = None  # (mirror generation, count)

    def _recorded_model(self) -> str | None:
        """The collection's own model when the settings do not name one and genrec can load it."""
        if self.settings.embedding_model:
            return None
        recorded = self.store.recorded_model()
        if recorded and (recorded in NAMED_MODELS or Path(recorded).is_dir()):
            return recorded
        return None

    # ------------------------------------------------------------------ the store, briefly

    def exists(self) -> bool:
        return self.store.exists()

    @property
    def metadata(self) -> dict:
        return self.store.metadata

    def set_metadata(self, **values: object) -> None:
        self.store.set_metadata(**values)

    @property
    def complete(self) -> bool:
        return bool(self.metadata.get("genrec_complete"))

    @property
    def freshness_s(self) -> float:
        return self.mirror.freshness_s

    @freshness_s.setter
    def freshness_s(self, seconds: float) -> None:
        self.mirror.freshness_s = seconds

    def count(self) -> int:
        """Items in the collection; remembered until the catalog is written (every request
        asks, and Chroma counts in O(items))."""
        generation = self.mirror.generation()
        known = self._count
        if known is not None and known[0] == generation:
            return known[1]
        n = self.store.count()
        self._count = (generation, n)
        return n

    def ids(self) -> list[str]:
        return self.store.ids()

    def all_items(self) -> list[Item]:
        return self.store.all_items()

    def vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        return self.mirror.vectors(ids)

    # ------------------------------------------------------------------ writing (see .writer)

    def upsert(
        self, items: Iterable[Item], *, progress: bool = True, source: str = ""
    ) -> writer.IngestReport:
        return writer.upsert(self, items, progress=progress, source=source)

    def sync(
        self, items: Sequence[Item], *, progress: bool = True, source: str = ""
    ) -> writer.IngestReport:
        return writer.sync(self, items, progress=progress, source=source)

    def delete(self, ids: Sequence[str]) -> None:
        writer.delete(self, ids)

    def drop(self) -> None:
        """Delete the collection (used by `genrec ingest --recreate` and benchmarks)."""
        self.store.drop()
        self.mirror.forget()

    # ------------------------------------------------------------------ items

    def get(self, ids: Sequence[str]) -> list[Item]:
        """The items with these IDs, in the order asked; unknown IDs are left out."""
        if not ids or not self.store.exists():
            return []
        wanted = [str(i) for i in ids]
        found = self.mirror.by_id(list(dict.fromkeys(wanted)))
        return [found[i] for i in wanted if i in found]

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
        item_id = self.mirror.by_title(ref)
        hit = self.get([item_id]) if item_id else []
        return hit[0] if hit else None

    def resolve_history(self, refs: Sequence[str]) -> list[Item]:
        """History entries (IDs or titles) -> items, in order: the one place a history is
        resolved. Any unknown entry is a 400 on ``history``."""
        found = {item.id: item for item in self.get(list(refs))}
        out: list[Item] = []
        missing: list[str] = []
        for ref in refs:
            item = found.get(str(ref)) or self.resolve(ref)
            if item is None:
                missing.append(ref)
            else:
                out.append(item)
        if missing:
            shown = ", ".join(repr(m) for m in missing[:5])
            raise InvalidRequest(
                f"history has {len(missing)} item(s) not in the catalog: {shown}; "
                f"use item IDs or exact titles from collection {self.name!r}",
                param="history",
            )
        return out

    def allowed(self, where: dict, *, param: str = "where") -> frozenset[str]:
        """The IDs of every item matching ``where``, remembered (genrec.index.allowed)."""
        return self._allowed.get(where, param=param)

    def first_matching(
        self, ranked: Sequence[str], where: dict, n: int, *, param: str = "where"
    ) -> list[str]:
        """The first ``n`` of ``ranked`` (IDs, best first) whose items match ``where``."""
        return self._allowed.first_matching(ranked, where, n, param=param)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self.embedder.embed(texts)

    def warm(self) -> None:
        """Load the embedding model, the item mirror and the catalog summary (popularity order,
        title hashes: genrec.index.mirror) now, so that the first search does not pay for them."""
        self.embedder.encode(["warm up"])
        if self.exists():
            self.mirror.summary()

    # ------------------------------------------------------------------ search

    def language_warning(self, text: str) -> str | None:
        """Why the collection's embedder may not understand ``text`` (None when it can)."""
        return self._texts.language_warning(text)

    def forget_queries(self) -> None:
        """Drop the remembered query vectors (benchmarks time the embedder, not the cache)."""
        self._texts.forget()

    def text_vector(self, text: str) -> np.ndarray:
        """One query's vector, remembered for the last few hundred distinct queries."""
        return self._texts.vector(text)

    def history_vector(self, history_ids: Sequence[str]) -> np.ndarray:
        """The decayed, normalised profile of a history of item IDs (see the module docstring);
        the IDs come from :meth:`resolve_history`."""
        vectors = self.vectors(history_ids)
        if missing := [i for i in history_ids if i not in vectors]:
            raise InvalidRequest(
                f"history has {len(missing)} unknown item ID(s): {missing[:5]}", param="history"
            )
        n = len(history_ids)
        weights = 0.5 ** ((n - 1 - np.arange(n)) / self.history_half_life)
        profile = (weights[:, None] * np.stack([vectors[i] for i in history_ids])).sum(axis=0)
        return _unit(profile)

    def search(
        self,
        text: str | None = None,
        *,
        history: Sequence[str] = (),
        k: int = 20,
        where: dict | None = None,
        exclude: Sequence[str] = (),
        param: str = "where",
        channel: Channel = "fused",
    ) -> list[SearchHit]:
        """Top-k items for a text, a history (IDs or titles, oldest first), or both."""
        if not isinstance(k, int) or k < 1:
            raise InvalidRequest("k must be a positive integer", param="k")
        validate_where(where, param=param)
        text = (text or "").strip()
        if not text and not history:
            raise InvalidRequest("give a query text or a history of item IDs", param="query")
        self.store.require()
        history_ids = [item.id for item in self.resolve_history(history)] if history else []
        return self.search_profile(
            text, history_ids, k=k, where=where, exclude=exclude, param=param, channel=channel
        )

    def search_profile(
        self, text: str, history_ids: Sequence[str], **options: Any
    ) -> list[SearchHit]:
        """:meth:`rank_profile` (same options), its items read."""
        return self.hits(self.rank_profile(text, history_ids, **options))

    def rank_profile(
        self,
        text: str,
        history_ids: Sequence[str],
        *,
        k: int,
        where: dict | None = None,
        exclude: Sequence[str] = (),
        param: str = "where",
        channel: Channel = "fused",
    ) -> list[tuple[str, float]]:
        """:meth:`search` by ID and score alone (no item is read) for a history already
        resolved to item IDs, on one channel (see the module docstring; ``fused`` is dense alone
        where there is no lexical index or no text)."""
        if channel not in CHANNELS:
            raise InvalidRequest(
                f"unknown channel {channel!r}; use one of {CHANNELS}", param="channel"
            )
        lexical = bool(text) and channel != "dense" and self.lexical_enabled()
        banned = [*exclude, *history_ids]
        if channel == "lexical":
            if not lexical:
                raise InvalidRequest(
                    f"collection {self.name!r} has no lexical index, or the search has no text; "
                    f"ingest with GENREC_LEXICAL=on",
                    param="channel",
                )
            return self._channel.search(text, k, where, banned, param)
        if lexical:
            pool = max(k, self.fusion_pool)
            dense = self._rank_dense(text, history_ids, pool, where, exclude, param)
            words = self._channel.search(text, pool, where, banned, param)
            return weighted_fusion([dense, words], [self.dense_weight, 1.0 - self.dense_weight], k)
        return self._rank_dense(text, history_ids, k, where, exclude, param)

    def hits(self, ranked: Sequence[tuple[str, float]]) -> list[SearchHit]:
        """The items of a ranking (one deleted since it was ranked is left out)."""
        items = self.mirror.by_id([item_id for item_id, _ in ranked])
        return [SearchHit(item=items[i], score=s) for i, s in ranked if i in items]

    def _rank_dense(
        self,
        text: str,
        history_ids: Sequence[str],
        k: int,
        where: dict | None,
        exclude: Sequence[str],
        param: str,
    ) -> list[tuple[str, float]]:
        vector: np.ndarray | None = self.history_vector(history_ids) if history_ids else None
        if text:
            text_vec = self.text_vector(text)
            vector = text_vec if vector is None else _unit(vector + text_vec)
        if vector is None:
            raise InvalidRequest("give a query text or a history of item IDs", param="query")
        return self.nearest(vector, k=k, where=where, exclude=[*exclude, *history_ids], param=param)

    def search_vector(
        self, vector: Sequence[float] | np.ndarray, **options: Any
    ) -> list[SearchHit]:
        """:meth:`nearest` (same options), its items read."""
        return self.hits(self.nearest(vector, **options))

    def nearest(
        self,
        vector: Sequence[float] | np.ndarray,
        *,
        k: int,
        where: dict | None = None,
        exclude: Sequence[str] = (),
        param: str = "where",
    ) -> list[tuple[str, float]]:
        """Nearest items to a vector by ID and cosine similarity (no item is read), honouring
        ``where``, never returning ``exclude``."""
        if k < 1:
            raise InvalidRequest("k must be a positive integer", param="k")
        banned = {str(e) for e in exclude}
        allowed = self.allowed(where, param=param) if where is not None else None
        # A filter: exact search among its items' vectors held in process (genrec.index.filtered)
        # when it matches few enough; else the store's over-fetch or its own filtered query.
        n = k + len(banned)
        nearest = None if allowed is None else self._filtered.nearest(allowed, vector, n)
        if nearest is None:
            nearest = self.store.query(vector, n, where, param=param, allowed=allowed)
        found = [(item_id, dist) for item_id, dist in nearest if item_id not in banned][:k]
        return [(item_id, 1.0 - float(dist)) for item_id, dist in found]

    # ------------------------------------------------------------------ the lexical channel

    def lexical_wanted(self, languages: dict[str, int]) -> bool:
        """Whether this collection should have a lexical index, given its catalog's scripts."""
        return self._channel.wanted(languages)

    def lexical_enabled(self) -> bool:
        """Whether text searches fuse the lexical channel (genrec.index.lexical_channel)."""
        return self._channel.enabled()

    def refresh_lexical(self) -> None:
        """Bring the lexical index in step with the collection now (the writer calls this)."""
        self._channel.refresh()

    def search_lexical(
        self,
        text: str,
        *,
        k: int,
        where: dict | None = None,
        exclude: Sequence[str] = (),
        param: str = "where",
    ) -> list[SearchHit]:
        """BM25 top-k for ``text``, honouring ``where``, never returning ``exclude``."""
        return self.hits(self._channel.search(text, k, where, exclude, param))


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v
