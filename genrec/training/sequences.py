"""Per-user item-index sequences held as two numpy arrays (CSR layout), never as Python lists.

``Sequences`` is a ``Sequence[np.ndarray]``: ``seqs[u]`` is user u's items (oldest first, a view),
``seqs[a:b]`` is another ``Sequences``. Every model takes either this or a list of lists
(:func:`as_sequences` converts), so the small tests stay readable and the 10-million-event
logs stay two arrays (items int32, 4 bytes an event; offsets int64, 8 bytes a user).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

import numpy as np


class Sequences(Sequence[np.ndarray]):
    def __init__(self, indptr: np.ndarray, items: np.ndarray) -> None:
        self.indptr = np.asarray(indptr, dtype=np.int64)
        self.items = np.asarray(items, dtype=np.int32)
        if self.indptr.ndim != 1 or len(self.indptr) < 1 or self.indptr[-1] != len(self.items):
            raise ValueError("Sequences: indptr must end at len(items)")

    @classmethod
    def from_lists(cls, seqs: Sequence[Sequence[int]]) -> Sequences:
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        indptr = np.zeros(len(seqs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        items = np.empty(int(indptr[-1]), dtype=np.int64)
        for row, s in enumerate(seqs):
            items[indptr[row] : indptr[row + 1]] = s
        if len(items) and (items.min() < np.iinfo(np.int32).min or items.max() >= 2**31):
            raise ValueError("item indices must fit in int32")
        return cls(indptr, items)

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @overload
    def __getitem__(self, key: int) -> np.ndarray: ...
    @overload
    def __getitem__(self, key: slice) -> Sequences: ...
    def __getitem__(self, key: int | slice) -> np.ndarray | Sequences:
        if isinstance(key, slice):
            start, stop, step = key.indices(len(self))
            if step != 1:
                return self.take(np.arange(start, stop, step))
            stop = max(stop, start)
            ptr = self.indptr[start : stop + 1]
            return Sequences(ptr - ptr[0], self.items[ptr[0] : ptr[-1]])
        n = len(self)
        if key < 0:
            key += n
        if not 0 <= key < n:
            raise IndexError(key)
        return self.items[self.indptr[key] : self.indptr[key + 1]]

    def __iter__(self) -> Iterator[np.ndarray]:
        for row in range(len(self)):
            yield self.items[self.indptr[row] : self.indptr[row + 1]]

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    def rows(self) -> np.ndarray:
        """The user (row) of each entry of ``items``."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths)

    def take(self, rows: np.ndarray) -> Sequences:
        """The sequences of these users, in this order."""
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        # Entry positions: each row's start repeated, plus the offset within the row.
        starts = np.repeat(self.indptr[rows], lengths)
        offsets = np.arange(int(indptr[-1]), dtype=np.int64) - np.repeat(indptr[:-1], lengths)
        return Sequences(indptr, self.items[starts + offsets])

    def tail(self, n: int) -> Sequences:
        """Each sequence cut to its last ``n`` items (n <= 0: unchanged)."""
        if n <= 0:
            return self
        keep = np.minimum(self.lengths, n)
        indptr = np.zeros(len(self) + 1, dtype=np.int64)
        np.cumsum(keep, out=indptr[1:])
        starts = np.repeat(self.indptr[1:] - keep, keep)
        offsets = np.arange(int(indptr[-1]), dtype=np.int64) - np.repeat(indptr[:-1], keep)
        return Sequences(indptr, self.items[starts + offsets])

    def drop_last(self) -> tuple[Sequences, np.ndarray, np.ndarray]:
        """Leave-one-out: (every sequence of 2+ items without its last, those last items, the
        rows they came from)."""
        rows = np.flatnonzero(self.lengths >= 2)
        kept = self.take(rows)
        last = kept.items[kept.indptr[1:] - 1].astype(np.int64)
        lengths = kept.lengths - 1
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        mask = np.ones(len(kept.items), dtype=bool)
        mask[kept.indptr[1:] - 1] = False
        return Sequences(indptr, kept.items[mask]), last, rows

    def check(self, n_items: int, what: str) -> None:
        """ValueError naming the first row that holds an index outside 0..n_items-1."""
        if n_items < 1:
            raise ValueError(f"n_items must be positive, got {n_items}")
        bad = (self.items < 0) | (self.items >= n_items)
        if bad.any():
            row = int(np.searchsorted(self.indptr, np.flatnonzero(bad)[0], side="right") - 1)
            raise ValueError(f"{what}[{row}] holds an item index outside 0..{n_items - 1}")


def as_sequences(seqs: Sequence[Sequence[int]]) -> Sequences:
    return seqs if isinstance(seqs, Sequences) else Sequences.from_lists(seqs)
