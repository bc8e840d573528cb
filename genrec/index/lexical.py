"""The lexical channel: BM25 (bm25s) over a collection's item words, beside Chroma.

Local Chroma has no sparse or BM25 ranking, so genrec keeps one BM25 index per collection under
``$GENREC_HOME/lexical/<collection>/``::

    CURRENT                 the version that serves (replaced atomically, last)
    <version>/              bm25s's arrays + ids.json + manifest.json (catalog digest, sha256
                            of every file, the segmenter's version)

Words come from :func:`genrec.languages.words` (jieba for Chinese, a word split otherwise) over
the title, category, tags, description and attribute values, so exact product words (brands,
sizes, model numbers) count in every language.

An index is built for exactly one catalog state: the collection's ``genrec_digest``. The writer
rebuilds it after every write; a reader that finds it missing, stale (another digest) or
corrupted (a file missing or changed, a load failure) logs why and rebuilds it from the items in
Chroma, so an ingest killed between the vectors and the lexical index, or a damaged file, costs
one rebuild and loses nothing. Builds go to a fresh folder renamed into place; two processes
building at once each write their own and the last rename wins (both are the same index; one
whose folder the other cleaned away is found missing and rebuilt); threads of one process build
one at a time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genrec.data.item import Item
from genrec.languages import words

log = logging.getLogger("genrec.index.lexical")

SEGMENTER = "genrec-words-1"  # bump when languages.words changes: old indexes are rebuilt


def lexical_text(item: Item) -> str:
    """What the lexical channel reads of an item."""
    values = [str(v) for v in item.attributes.values() if isinstance(v, str)]
    return " ".join([item.title, item.category, *item.tags, item.description, *values])


@dataclass
class _Loaded:
    digest: str
    ids: list[str]
    bm25: object  # bm25s.BM25


class LexicalIndex:
    """BM25 for one collection; thread-safe; ``ensure`` keeps it in step with the catalog."""

    check_every_s = 1.0  # how often a reader compares the catalog digest (as the item mirror)

    def __init__(self, home: Path, collection: str) -> None:
        self.root = home / "lexical" / collection
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._loaded: _Loaded | None = None
        self.rebuilds = 0  # builds done by this object (tests, logs)

    # ------------------------------------------------------------------ building

    def build(self, items: Sequence[Item], digest: str) -> None:
        """Write a new version for ``items`` (the whole catalog at ``digest``) and switch to it."""
        bm25s = _bm25s()

        self.root.mkdir(parents=True, exist_ok=True)
        version = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}"
        tmp = self.root / f".tmp-{version}"
        ids = [item.id for item in items]
        corpus = [words(lexical_text(item)) or ["\u2205"] for item in items]
        bm25 = bm25s.BM25()
        if corpus:
            bm25.index(corpus, show_progress=False)
        tmp.mkdir()
        if corpus:
            bm25.save(str(tmp), show_progress=False)
        (tmp / "ids.json").write_text(json.dumps(ids, ensure_ascii=False), encoding="utf-8")
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
        manifest = {"digest": digest, "segmenter": SEGMENTER, "count": len(ids), "files": files}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        _fsync_dir(tmp)
        final = self.root / version
        os.replace(tmp, final)
        pointer = self.root / f".CURRENT-{version}"
        pointer.write_text(version, encoding="utf-8")
        os.replace(pointer, self.root / "CURRENT")
        _fsync_dir(self.root)
        with self._lock:
            self._loaded = _Loaded(digest, ids, bm25 if corpus else None)
        self.rebuilds += 1
        self._clean(keep=version)

    def _clean(self, keep: str) -> None:
        """Remove older versions and leftovers of killed builds (a killed build's folder never
        became CURRENT, so nothing reads it)."""
        for path in self.root.iterdir():
            if path.is_dir() and path.name != keep:
                age = time.time() - path.stat().st_mtime
                # another process may be building right now: leave recent temp folders alone
                if not path.name.startswith(".tmp-") or age > 3600:
                    shutil.rmtree(path, ignore_errors=True)

    # ------------------------------------------------------------------ loading

    def stored_digest(self) -> str | None:
        """The digest of the version on disk (its manifest), None when there is none."""
        try:
            version = (self.root / "CURRENT").read_text(encoding="utf-8").strip()
            manifest = json.loads((self.root / version / "manifest.json").read_text("utf-8"))
            return manifest["digest"]
        except (OSError, ValueError, KeyError):
            return None

    def _load(self) -> _Loaded:
        """The version on disk, verified; raises ValueError saying what is wrong with it."""
        bm25s = _bm25s()

        current = self.root / "CURRENT"
        if not current.is_file():
            raise ValueError("it has not been built")
        folder = self.root / current.read_text(encoding="utf-8").strip()
        try:
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
            files = manifest["files"]
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"its manifest cannot be read ({exc})") from None
        if manifest.get("segmenter") != SEGMENTER:
            raise ValueError(f"it was built by another segmenter ({manifest.get('segmenter')})")
        for name, digest in files.items():
            path = folder / name
            if not path.is_file():
                raise ValueError(f"{path} is missing")
            if _sha256(path) != digest:
                raise ValueError(f"{path} is corrupted (its checksum changed)")
        ids = json.loads((folder / "ids.json").read_text(encoding="utf-8"))
        if len(ids) != manifest.get("count"):
            raise ValueError("ids.json does not match its manifest")
        bm25 = None
        if ids:
            try:
                bm25 = bm25s.BM25.load(str(folder), show_progress=False)
            except Exception as exc:  # noqa: BLE001 - any load failure means a bad index
                raise ValueError(f"bm25s cannot load it ({exc})") from None
        return _Loaded(manifest["digest"], ids, bm25)

    def ensure(self, digest: str, items: Callable[[], Sequence[Item]]) -> _Loaded:
        """The index for the catalog at ``digest``: in memory, else from disk, else rebuilt
        from ``items()`` (the whole catalog), saying why."""
        with self._lock:
            loaded = self._loaded
        if loaded is not None and loaded.digest == digest:
            return loaded
        with self._build_lock:  # one load-or-build at a time in this process
            return self._load_or_build(digest, items)

    def _load_or_build(self, digest: str, items: Callable[[], Sequence[Item]]) -> _Loaded:
        with self._lock:
            loaded = self._loaded
        if loaded is not None and loaded.digest == digest:
            return loaded  # another thread did it while this one waited
        why = None
        try:
            loaded = self._load()
            if loaded.digest != digest:
                why = "the catalog changed since it was built"
        except ValueError as exc:
            why = str(exc)
        if why is None:
            with self._lock:
                self._loaded = loaded
            return loaded
        if self.root.joinpath("CURRENT").is_file():  # a first build is not news
            log.warning("lexical index %s: %s; rebuilding it from the catalog", self.root, why)
        self.build(items(), digest)
        assert self._loaded is not None
        return self._loaded

    # ------------------------------------------------------------------ searching

    def search(
        self,
        loaded: _Loaded,
        text: str,
        k: int,
        *,
        allowed: set[str] | None = None,
        banned: set[str] = frozenset(),  # type: ignore[assignment]
    ) -> list[tuple[str, float]]:
        """(id, BM25 score) of the best ``k`` items with a positive score, ``allowed`` only
        (None = all), never ``banned``."""
        query = words(text)
        if not query or loaded.bm25 is None:
            return []
        scores = np.asarray(loaded.bm25.get_scores(query), dtype=np.float64)
        order = np.argsort(-scores, kind="stable")
        out: list[tuple[str, float]] = []
        for i in order:
            if scores[i] <= 0 or len(out) >= k:
                break
            item_id = loaded.ids[i]
            if item_id in banned or (allowed is not None and item_id not in allowed):
                continue
            out.append((item_id, float(scores[i])))
        return out

    def drop(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        with self._lock:
            self._loaded = None


def _bm25s():  # noqa: ANN202 - an untyped module
    import bm25s

    # bm25s sets its own logger to DEBUG ("Building index from tokens" on every build)
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- fusion

RRF_K = 60  # the constant of Cormack et al. (2009); ranks matter, not raw scores


def reciprocal_rank_fusion(
    lists: Sequence[Sequence[str]], k: int, weights: Sequence[float] | None = None
) -> list[tuple[str, float]]:
    """Items by the (weighted) sum of 1 / (RRF_K + rank) over the lists they are in."""
    weights = weights or [1.0] * len(lists)
    scores: dict[str, float] = {}
    for ranked, weight in zip(lists, weights, strict=True):
        for rank, item_id in enumerate(ranked, start=1):
            scores[item_id] = scores.get(item_id, 0.0) + weight / (RRF_K + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])[:k]


def weighted_fusion(
    lists: Sequence[Sequence[tuple[str, float]]], weights: Sequence[float], k: int
) -> list[tuple[str, float]]:
    """Items by the weighted sum of each list's min-max normalised scores (0 where absent)."""
    scores: dict[str, float] = {}
    for ranked, weight in zip(lists, weights, strict=True):
        if not ranked:
            continue
        values = [s for _, s in ranked]
        lo, hi = min(values), max(values)
        for item_id, s in ranked:
            norm = (s - lo) / (hi - lo) if hi > lo else 1.0
            scores[item_id] = scores.get(item_id, 0.0) + weight * norm
    return sorted(scores.items(), key=lambda kv: -kv[1])[:k]
