"""Retrievers trained on interactions (genrec.training), served from their bundle.

- :class:`ScoringRetriever` (``itemknn``, ``ease``): an in-process model scores every item it
  knows for the history (itemknn reads only the history items' sparse rows: one float vector
  over the items per request). Filters: the top M by score are checked against the filter's
  matching IDs (the index remembers them per distinct filter, so a request never lists the
  catalog), M widening until k survive.
  Zero-evidence ties are broken by training popularity, so it always has candidates for a
  known history.
- :class:`VectorRetriever` (``sasrec``): the sequential encoder runs in process over the
  history and gives one user vector; its top items by inner product are searched in process over
  the model's own item table (genrec.retrieval.item_search: faiss; 10x faster than a Chroma
  collection of the same vectors, and near exact where Chroma's HNSW found about half the top).
  A filter's matching IDs come from the index (one Chroma query per distinct filter); their rows
  of the table are copied out once and held (genrec.index.filtered), and until then, or for a
  filter too big to hold, the search masks the other items out.
- :class:`WithContentFallback`: a learned retriever knows only items seen in training; when it
  has fewer than ``k`` candidates (a history of unseen items, a text-only request) the content
  retriever fills the rest, so cold start stays served.

History items the model never saw are ignored by the model (content still sees them).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import scipy.sparse as sp

from genrec.index import CatalogIndex
from genrec.index.filtered import FilteredVectors
from genrec.retrieval.base import Candidate, Ranked, RankingRetriever, RetrievalQuery, Retriever
from genrec.retrieval.item_search import ItemSearch, Subset

# For type hints only: leave_one_out (and so torch) is imported where a SASRec model serves,
# so the rest of genrec starts without torch.
if TYPE_CHECKING:
    from genrec.training.collaborative import HistoryRows
    from genrec.training.leave_one_out import LeftOut

T = TypeVar("T")
Only = tuple[np.ndarray, np.ndarray]  # a filter's mask over item indices, its items by popularity
LEFT_OUT_KEPT = 64  # recent histories' left-out vectors kept for their explanation
ROWS_KEPT, ROWS_BYTES = 32, 64 << 20  # recent histories' score rows kept for their explanation


class _Learned:
    """A trained model over the item indices of its bundle, reading items from the catalog."""

    def __init__(self, name: str, model: Any, item_ids: list[str], index: CatalogIndex) -> None:
        self.name = name
        self.model = model
        self.item_ids = item_ids
        self.position = {item_id: i for i, item_id in enumerate(item_ids)}
        self.index = index
        # per remembered filter, by its set's id: (the set, what was made of it)
        self._per_filter: OrderedDict[int, tuple[frozenset[str], Any]] = OrderedDict()
        self._per_filter_lock = threading.Lock()

    def known_history(self, query: RetrievalQuery) -> list[int]:
        return query.positions(self.position)

    def for_filter(self, allowed: frozenset[str], make: Callable[[frozenset[str]], T]) -> T:
        """``make(allowed)``, kept for the last 64 filters: the index returns the same set
        object for one filter (genrec.index.allowed), so it is found by its id, and the set is
        kept with it so that id stays unique."""
        with self._per_filter_lock:
            kept = self._per_filter.get(id(allowed))
            if kept is not None and kept[0] is allowed:
                self._per_filter.move_to_end(id(allowed))
                return kept[1]
        made = make(allowed)
        with self._per_filter_lock:
            self._per_filter[id(allowed)] = (allowed, made)
            while len(self._per_filter) > 64:
                self._per_filter.popitem(last=False)
        return made


class ScoringRetriever(_Learned):
    def __init__(
        self, name: str, model: Any, item_ids: list[str], index: CatalogIndex, popularity: Any
    ) -> None:
        super().__init__(name, model, item_ids, index)
        # A tie-breaker far below any real score: among items with no evidence, popular first.
        pop = np.asarray(popularity, dtype=np.float64)
        self._tiebreak = 1e-9 * pop / max(float(pop.max()), 1.0)
        self._by_popularity = np.argsort(-self._tiebreak, kind="stable")
        # The rows a request's scores were read from, for its evidence (genrec.explain).
        self._rows: OrderedDict[tuple[int, ...], HistoryRows] = OrderedDict()
        self._rows_lock = threading.Lock()

    def _scores(self, history: list[int]) -> Any:
        rows = self.model.history_rows(history)
        if rows is None:
            return self.model.batch_scores([history])
        with self._rows_lock:
            self._rows[tuple(history)] = rows
            held = sum(r.rows.nbytes for r in self._rows.values())
            while len(self._rows) > 1 and (len(self._rows) > ROWS_KEPT or held > ROWS_BYTES):
                held -= self._rows.popitem(last=False)[1].rows.nbytes
        return rows.scores()

    def contributions(
        self, history: list[int], items: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The model's (history items, terms) for ``items``, from the rows this history's
        retrieval read when they are still kept."""
        with self._rows_lock:
            rows = self._rows.get(tuple(history))
        return self.model.contributions(history, items, rows)

    def retrieve(self, query: RetrievalQuery) -> list[Candidate]:
        # An over-fetch covers items deleted from the catalog since training, widened when more
        # than that were deleted.
        extra = 32
        while True:
            found = self.ranked(query, extra)
            items = {it.id: it for it in self.index.get([i for i, _ in found])}
            out = [Candidate(items[i], s) for i, s in found if i in items]
            if len(out) >= query.k or len(found) < query.k + extra:
                return out[: query.k]
            extra *= 8

    def ranked(self, query: RetrievalQuery, extra: int = 0) -> Ranked:
        """The top ``k + extra`` by score (IDs the catalog may have dropped since training)."""
        history = self.known_history(query)
        if not history:
            return []
        scores = self._scores(history)
        banned = np.asarray(
            [self.position[i] for i in query.banned if i in self.position], dtype=np.int64
        )
        # A filter's matching IDs come from the index's cache (one Chroma query per distinct
        # filter), made an array mask here once per filter: the top is taken among them.
        allowed = None if query.where is None else self.index.allowed(query.where, param="filters")
        only = None if allowed is None else self._only(allowed)
        top = self._top(scores, banned, query.k + extra, only)
        return [(self.item_ids[i], s) for i, s in top]

    def _only(self, allowed: frozenset[str]) -> Only:
        """(a mask over item indices, the allowed items most popular first) for a filter's
        IDs, made once per filter."""

        def make(allowed: frozenset[str]) -> Only:
            mask = np.zeros(len(self.item_ids), dtype=bool)
            mask[[self.position[i] for i in allowed if i in self.position]] = True
            return mask, self._by_popularity[mask[self._by_popularity]]

        return self.for_filter(allowed, make)

    def _top(
        self,
        scores: Any,
        banned: np.ndarray,
        n: int,
        only: Only | None = None,
    ) -> list[tuple[int, float]]:
        """The n best (item index, score + tie-break), best first, none banned, only allowed
        ones when ``only`` (:meth:`_only`) is given. A sparse row (itemknn: only items
        reachable from the history) is ranked over its stored items and the n + len(banned)
        most popular ones, which hold every item that can outrank the rest; at 300,000 items
        that is a few thousand values instead of a dense row."""
        if sp.issparse(scores):
            stored, data = scores.indices.astype(np.int64), scores.data
            by_popularity = self._by_popularity
            if only is not None:
                keep = only[0][stored]
                stored, data, by_popularity = stored[keep], data[keep], only[1]
            popular = by_popularity[: n + len(banned)]
            # membership through a mask over the items (np.isin hashes thousands per request)
            seen = np.zeros(len(self.item_ids), dtype=bool)
            seen[stored] = True
            items = np.concatenate([stored, popular[~seen[popular]]])
            values = self._tiebreak[items]
            values[: len(stored)] += data
        else:
            items = np.arange(scores.shape[-1])
            values = np.asarray(scores, dtype=np.float64).reshape(-1) + self._tiebreak
            if only is not None:
                values[~only[0]] = -np.inf
        is_banned = np.zeros(len(self.item_ids), dtype=bool)
        is_banned[banned] = True
        values[is_banned[items]] = -np.inf
        n = min(n, len(values))
        top = np.argpartition(-values, n - 1)[:n] if n < len(values) else np.arange(len(values))
        top = top[np.lexsort((items[top], -values[top]))]  # ties: by item index
        return [(int(items[t]), float(values[t])) for t in top if np.isfinite(values[t])]


class VectorRetriever(_Learned):
    def __init__(self, name: str, model: Any, item_ids: list[str], index: CatalogIndex) -> None:
        super().__init__(name, model, item_ids, index)
        # the model's own item table (a view, as genrec.explain reads it): faiss keeps the one
        # copy it searches, so the table is held twice rather than three times
        self.search = ItemSearch(model.net.item_matrix().detach().numpy())
        # A filter's rows copied out once (in the background) and held: then a product over
        # them (0.7 ms at 1 item in 12 of 170,000), where the search's masked scan takes ~1.6.
        self._filtered = FilteredVectors(self._rows_of, budget_bytes=128 << 20, cosine=False)
        # A one-layer encoder's user vector comes with its left-out vectors from one pass
        # (about the cost of the forward alone): kept per history for the explanation.
        self._left_out: OrderedDict[tuple[int, ...], LeftOut] = OrderedDict()
        self._lock = threading.Lock()

    def _user(self, history: list[int]) -> np.ndarray:
        from genrec.training.leave_one_out import closed_form, leave_one_out

        if not closed_form(self.model):
            return self.model.user_vectors([history])[0]
        loo = leave_one_out(self.model, history)
        with self._lock:
            self._left_out[tuple(history)] = loo
            while len(self._left_out) > LEFT_OUT_KEPT:
                self._left_out.popitem(last=False)
        return loo.vectors[0]

    def left_out(self, history: Sequence[int]) -> LeftOut:
        """The user vector and its left-out vectors for ``history`` (item indices): kept from
        its retrieval, else computed now."""
        from genrec.training.leave_one_out import leave_one_out

        with self._lock:
            kept = self._left_out.get(tuple(history))
        return kept if kept is not None else leave_one_out(self.model, history)

    def _subset(self, allowed: frozenset[str]) -> Subset:
        """The allowed items the model knows (items seen in training), as the search keeps to
        them; made once per filter."""

        def make(allowed: frozenset[str]) -> Subset:
            return self.search.subset(
                np.asarray(
                    [self.position[i] for i in allowed if i in self.position], dtype=np.int64
                )
            )

        return self.for_filter(allowed, make)

    def retrieve(self, query: RetrievalQuery) -> list[Candidate]:
        found = self.ranked(query)
        items = {it.id: it for it in self.index.get([i for i, _ in found])}
        return [Candidate(items[i], s) for i, s in found if i in items]

    def _rows_of(self, ids: Sequence[str]) -> tuple[list[str], np.ndarray]:
        """The item table's rows of the IDs the model knows (a FilteredVectors fetch)."""
        known = [i for i in ids if i in self.position]
        return known, self.search.table[[self.position[i] for i in known]]

    def ranked(self, query: RetrievalQuery) -> Ranked:
        history = self.known_history(query)
        if not history:
            return []
        user = self._user(history)
        banned = query.banned
        n = query.k + len(banned)
        found: Ranked
        if not query.where:
            found = [(self.item_ids[i], s) for i, s in self.search.top(user, n)]
        else:
            allowed = self.index.allowed(query.where, param="filters")
            held = self._filtered.nearest(allowed, user, n)  # distances: 1 - u.v
            if held is not None:
                found = [(i, 1.0 - d) for i, d in held]
            else:  # not held (yet, or too big to): searched with the rest masked out
                top = self.search.top(user, n, self._subset(allowed))
                found = [(self.item_ids[i], s) for i, s in top]
        return [(i, score) for i, score in found if i not in banned][: query.k]


class WithContentFallback:
    def __init__(self, learned: Retriever, content: Retriever) -> None:
        self.name = learned.name
        self.learned = learned
        self.content = content

    def retrieve(self, query: RetrievalQuery) -> list[Candidate]:
        out = self.learned.retrieve(query)
        if len(out) >= query.k:
            return out
        seen = {c.item.id for c in out}
        # Below every learned score: the learned ranking keeps its order, content fills in.
        floor = min((c.score for c in out), default=0.0)
        filled = [
            c for c in self.content.retrieve(self._rest(query, seen)) if c.item.id not in seen
        ]
        out += [Candidate(c.item, floor - 1.0 - r) for r, c in enumerate(filled)]
        return out[: query.k]

    def ranked(self, query: RetrievalQuery) -> Ranked:
        """As :meth:`retrieve`, by ID (a member of the hybrid)."""
        learned, content = self.learned, self.content
        if not (isinstance(learned, RankingRetriever) and isinstance(content, RankingRetriever)):
            return [(c.item.id, c.score) for c in self.retrieve(query)]
        out = learned.ranked(query)
        if len(out) >= query.k:
            return out
        seen = {i for i, _ in out}
        floor = min((s for _, s in out), default=0.0)
        filled = [i for i, _ in content.ranked(self._rest(query, seen)) if i not in seen]
        out += [(i, floor - 1.0 - r) for r, i in enumerate(filled)]
        return out[: query.k]

    @staticmethod
    def _rest(query: RetrievalQuery, seen: set[str]) -> RetrievalQuery:
        return query.widened(query.k + len(seen))
