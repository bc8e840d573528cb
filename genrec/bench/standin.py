"""Stand-in vectors for a synthetic catalog: a collection of any size in minutes, for latency.

Embedding 300,000 titles takes the packaged MiniLM about half an hour on two free cores (hours on a
loaded machine). The serving path's latency depends on the collection's size and the shape of its
vector space, not on how each vector was made, so ``genrec bench scale --standin-vectors`` fills
the collection through the ordinary writer (the same records, metadata, digest and completeness
stamps as ``genrec ingest``) with each item's vector made from the real model's embedding of its
*topic phrase* (the synthetic item's text without its brand: noun, category, descriptors;
one embedding per topic, a few hundred in all) plus seeded per-item noise. Query texts are
embedded by the real model, so text search lands among the right topics. Retrieval-quality numbers
measured on such a collection are not the embedder's; the JSON says which vectors were used.

    python -m genrec.bench.standin CATALOG.jsonl COLLECTION    # prints the ingest report (JSON)
"""

from __future__ import annotations

import json
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from genrec.embeddings import Embedder

NOISE = 0.35  # per-item noise's norm against the unit topic vector: items of a topic stay apart


def topic_phrase(text: str) -> str:
    """``"Brand noun. Category. Genres: w1, w2."`` -> ``"noun. Category. Genres: w1, w2."``
    (what a synthetic item shares with its topic)."""
    return text.split(" ", 1)[1] if " " in text else text


class StandInEmbedder(Embedder):
    """The real model for queries and topic phrases; topic vector plus noise for catalog text."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._topics: dict[str, np.ndarray] = {}

    def encode(
        self, texts: Sequence[str], *, batch_size: int | None = None, query: bool = False
    ) -> np.ndarray:
        if query:
            return super().encode(texts, batch_size=batch_size, query=True)
        phrases = [topic_phrase(t) for t in texts]
        new = sorted({p for p in phrases if p not in self._topics})
        if new:
            self._topics.update(zip(new, super().encode(new, batch_size=batch_size), strict=True))
        out = np.stack([self._topics[p] for p in phrases]).astype(np.float32)
        for row, text in enumerate(texts):
            rng = np.random.default_rng(zlib.crc32(text.encode()))
            noise = rng.standard_normal(out.shape[1]).astype(np.float32)
            out[row] += NOISE * noise / np.linalg.norm(noise)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def main(argv: list[str] | None = None) -> None:
    from genrec.data.catalog_files import load_catalog
    from genrec.index import CatalogIndex
    from genrec.settings import Settings

    args = sys.argv[1:] if argv is None else argv
    source, name = Path(args[0]), args[1]
    settings = Settings.load()
    index = CatalogIndex(settings, name, embedder=StandInEmbedder(settings))
    report = index.upsert(load_catalog(source).items, source=str(source))
    doc = {**report.model_dump(), "written": report.written, "items_per_s": report.items_per_s}
    print(json.dumps({**doc, "vectors": "stand-in (topic embedding + noise)"}))


if __name__ == "__main__":
    main()
