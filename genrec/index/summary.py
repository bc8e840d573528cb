"""A big catalog's compact summary, and the files that keep it per catalog version.

Every catalog has a compact :class:`Summary`, built by one pass over the collection: its IDs
most popular first (what a request with nothing to go on is served from, genrec.retrieval.popular)
and two sorted arrays of 64-bit title hashes (exact lower-cased title, normalised title) pointing
into that order, so a history given by titles resolves without a title dict per replica. At
300,000 items it holds 25.5 MB; reading every item's metadata to build it takes minutes there, so
a big catalog's summary is kept in ``GENREC_HOME/summaries/`` per catalog version (the
``genrec_written`` stamp) and the next process (a replica starting) loads it
(:class:`SummaryFiles`).

A big catalog's summary also carries :class:`Records`: every item's metadata as compact JSON in
one byte array (no Python object per item; 300,000 short-titled items take about 60 MB), found by
a sorted array of ID hashes. While a summary is held, item lookups read it and never Chroma: at
300,000 items a Chroma ``get`` of 20 items' metadata costs about 5 ms, 0.2 ms an item, more than
the nearest-neighbour query, and a hybrid request needs hundreds. Catalogs whose metadata would
pass the records budget keep only the item mirror's LRU cache (genrec.index.mirror).

With records, every item's vector is kept too: written once per catalog version beside the
summary (~11 s at 300,000 items) and memory-mapped read-only, so a replica reads any item's
vector without Chroma (20 from Chroma cost ~0.9 ms there) and the replicas of one machine share
the pages (460 MB at 300,000 x 384).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genrec.data.item import Item, id_key
from genrec.index.records import item_from_metadata
from genrec.titles import title_key

SCAN_PAGE = 5000  # records read from Chroma per call of a pass over the collection


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


class SummaryFiles:
    """A collection's summaries and mapped vectors on disk, one set per catalog version:
    ``summaries/<collection>-<version>.npz`` and ``summaries/<collection>/<...>.vectors.npy``
    (a folder per collection, so removing other versions' vectors touches only its own)."""

    def __init__(self, home: Path, name: str) -> None:
        self.folder = home / "summaries"
        self.name = name

    def _npz(self, stamp: Any) -> Path:
        return self.folder / f"{self.name}-{stamp}.npz"

    def load(self, stamp: Any) -> Summary | None:
        path = self._npz(stamp)
        if not path.is_file():
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

    def save(self, stamp: Any, summary: Summary) -> Summary:
        path = self._npz(stamp)
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

    def mapped_vectors(
        self, stamp: Any, summary: Summary, collection: Any, budget: int
    ) -> np.ndarray | None:
        """This catalog version's vectors, rows in the summary's order, memory-mapped (written
        by one pass over ``collection`` when missing; older versions' files are removed). None
        when they would pass ``budget`` bytes or the home cannot hold them: vectors then come
        from Chroma."""
        path = self.folder / self.name / f"{self._npz(stamp).stem}.vectors.npy"
        try:
            if not path.is_file():
                self.write_vectors(summary, path, collection, budget)
            if path.is_file():
                mapped = np.load(path, mmap_mode="r")
                fits = mapped.nbytes <= budget
                if fits and mapped.ndim == 2 and len(mapped) == len(summary.ids):
                    # a plain array over the mapping: np.memmap's own indexing runs in Python
                    return np.asarray(mapped)
        except (OSError, ValueError):
            pass
        return None

    def write_vectors(self, summary: Summary, path: Path, collection: Any, budget: int) -> None:
        assert summary.records is not None
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp.npy")
        out: np.ndarray | None = None
        filled = np.zeros(len(summary.ids), dtype=bool)
        offset = 0
        try:
            while collection is not None:
                got = collection.get(include=["embeddings"], limit=SCAN_PAGE, offset=offset)
                if len(got["ids"]) == 0:
                    break
                page = np.asarray(got["embeddings"], dtype=np.float32)
                if out is None:
                    if len(summary.ids) * page.shape[1] * 4 > budget:
                        return
                    out = np.lib.format.open_memmap(
                        tmp, mode="w+", dtype=np.float32, shape=(len(summary.ids), page.shape[1])
                    )
                at = {item_id: n for n, item_id in enumerate(got["ids"])}
                for item_id, r in summary.records.find(summary.ids, got["ids"]):
                    out[r] = page[at[item_id]]
                    filled[r] = True
                offset += len(got["ids"])
                if len(got["ids"]) < SCAN_PAGE:
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


def scan(collection: Any, records_budget: int) -> list[tuple[str, str, float, bytes | None]]:
    """(id, title, popularity, metadata JSON) of every record, a page at a time (no Item
    objects); the JSON is dropped from every row once the total passes ``records_budget``."""
    rows: list[tuple[str, str, float, bytes | None]] = []
    size, keep = 0, True
    while collection is not None:
        got = collection.get(include=["metadatas"], limit=SCAN_PAGE, offset=len(rows))
        for i, md in zip(got["ids"], got["metadatas"], strict=True):
            raw = (
                json.dumps(md, ensure_ascii=False, separators=(",", ":")).encode() if keep else None
            )
            size += len(raw) if raw is not None else 0
            rows.append((i, str(md.get("title", "")), float(md.get("popularity") or 0.0), raw))
        if keep and size > records_budget:
            keep = False
            rows = [(*r[:3], None) for r in rows]
        if len(got["ids"]) < SCAN_PAGE:
            break
    return rows
