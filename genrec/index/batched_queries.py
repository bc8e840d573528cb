"""Concurrent nearest-neighbour queries on one collection, answered by one Chroma call.

A Chroma ``query`` of one vector costs ~1.4 ms of CPU at 300,000 items, most of it per call
rather than per vector: eight vectors in one call cost ~0.8 ms each (measured on the scale
bench's collection). Requests served side by side (the server's worker threads; a hybrid request
makes one, content's) therefore share calls here: a query that finds
no call running makes one at once with what is waiting (at concurrency 1 nothing changes);
queries arriving meanwhile wait for it and go together in the next call, made by one of them.

Every query asks the store for ``n`` rounded up to a multiple of ``WIDTH`` and keeps its own
``n``: queries whose ``n`` differ by a few (the history a request excludes varies in length)
share a call, and each gets the same answer alone as in company (HNSW searches wider for a
bigger ``n``, so the width must not depend on the company). Vectors of different shapes go in
different calls; an error in a call is raised in every query it carried.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

Hits = list[tuple[str, float]]  # (id, distance), nearest first
Search = Callable[[np.ndarray, int], list[Hits]]  # (vectors as rows, n) -> one list per row
WIDTH = 32  # n asked of the store: rounded up to a multiple of this


def width(n: int) -> int:
    return -(-n // WIDTH) * WIDTH


@dataclass
class _Query:
    vector: np.ndarray
    n: int
    done: threading.Event = field(default_factory=threading.Event)
    hits: Hits | None = None
    error: BaseException | None = None
    leads: bool = False  # woken to make the next call rather than with its answer


class BatchedQueries:
    """``query(vector, n)`` for many threads at once, through ``search`` (see the module)."""

    def __init__(self, search: Search) -> None:
        self._search = search
        self._lock = threading.Lock()
        self._waiting: list[_Query] = []
        self._busy = False  # a thread is making a call now

    def query(self, vector: Sequence[float] | np.ndarray, n: int) -> Hits:
        mine = _Query(np.asarray(vector, dtype=np.float32), n)
        with self._lock:
            self._waiting.append(mine)
            leads = not self._busy
            self._busy = True
        if not leads:
            mine.done.wait()
        if leads or mine.leads:
            self._call()
        if mine.error is not None:
            raise mine.error
        assert mine.hits is not None
        return mine.hits

    def _call(self) -> None:
        """Answer everything waiting now, then hand the next call to a query that arrived
        meanwhile (or mark the store idle)."""
        with self._lock:
            batch, self._waiting = self._waiting, []
        try:
            # one call per width and vector shape: a malformed vector fails its own call only
            groups: dict[tuple[int, tuple[int, ...]], list[_Query]] = {}
            for q in batch:
                groups.setdefault((width(q.n), q.vector.shape), []).append(q)
            for (n, _), group in groups.items():
                try:
                    answers = self._search(np.stack([q.vector for q in group]), n)
                except BaseException as exc:  # noqa: BLE001 - raised in each query's own thread
                    for q in group:
                        q.error = exc
                    continue
                for q, hits in zip(group, answers, strict=True):
                    q.hits = hits[: q.n]
        finally:
            with self._lock:
                if self._waiting:
                    self._waiting[0].leads = True
                    self._waiting[0].done.set()
                else:
                    self._busy = False
            for q in batch:
                q.done.set()
