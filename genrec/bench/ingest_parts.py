"""Where an ingest's CPU goes, per item: the embedder (one and two ONNX Runtime threads) and
Chroma's write of the same vectors (with and without documents), measured side by side in one
process on the first items of a catalog file. Prints JSON (docs/ingest.md has the figures).

    python -m genrec.bench.ingest_parts CATALOG.jsonl [--items 3000] [--model NAME]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from itertools import islice
from pathlib import Path

import numpy as np

from genrec.data.catalog_files import CatalogFile
from genrec.data.item import Item
from genrec.embeddings import INT8_MODEL, Embedder
from genrec.index.records import item_to_metadata
from genrec.settings import Settings


def embed_cost(settings: Settings, texts: list[str], threads: int) -> tuple[float, np.ndarray]:
    """CPU ms per text for the embedder on ``threads`` ONNX threads (after one warm-up batch)."""
    embedder = Embedder(settings, threads=threads)
    embedder.encode(texts[:64])
    cpu = time.process_time()
    vectors = embedder.encode(texts)
    return 1000 * (time.process_time() - cpu) / len(texts), vectors


def write_cost(items: list[Item], vectors: np.ndarray, *, documents: bool, batch: int) -> float:
    """CPU ms per item for upserting these vectors into a fresh embedded Chroma collection."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    folder = tempfile.mkdtemp(prefix="genrec-bench-write-")
    try:
        client = chromadb.PersistentClient(
            path=folder, settings=ChromaSettings(anonymized_telemetry=False)
        )
        col = client.create_collection(
            "bench", configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
        )
        cpu = time.process_time()
        for start in range(0, len(items), batch):
            part = items[start : start + batch]
            extra = {"documents": [it.embedding_text() for it in part]} if documents else {}
            col.upsert(
                ids=[it.id for it in part],
                embeddings=vectors[start : start + batch],
                metadatas=[item_to_metadata(it, "0" * 40) for it in part],
                **extra,
            )
        return 1000 * (time.process_time() - cpu) / len(items)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run(settings: Settings, catalog: Path, n: int, batch: int = 1024) -> dict:
    """The figures for the first ``n`` items of ``catalog`` with ``settings.embedding_model``."""
    items = list(islice(CatalogFile(catalog), n))
    texts = [it.embedding_text() for it in items]
    one, vectors = embed_cost(settings, texts, threads=1)
    two, _ = embed_cost(settings, texts, threads=2)
    # alternating, twice, so a change in the machine's load shows as a spread
    with_docs = [write_cost(items, vectors, documents=True, batch=batch) for _ in range(2)]
    without = [write_cost(items, vectors, documents=False, batch=batch) for _ in range(2)]
    return {
        "catalog": str(catalog),
        "items": len(items),
        "model": Embedder(settings).model_id,
        "embed_ms_per_item_1_thread": round(one, 3),
        "embed_ms_per_item_2_threads": round(two, 3),
        "write_ms_per_item_with_documents": [round(x, 3) for x in with_docs],
        "write_ms_per_item_without_documents": [round(x, 3) for x in without],
        # the most two cores could ingest if embedding and writing were all an ingest cost
        "bound_items_per_s_2_cores": round(2000 / (one + min(without))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("catalog", type=Path)
    parser.add_argument("--items", type=int, default=3000)
    parser.add_argument("--model", default=INT8_MODEL)
    args = parser.parse_args()
    settings = Settings(embedding_model=args.model)
    print(json.dumps(run(settings, args.catalog, args.items), indent=2))


if __name__ == "__main__":
    main()
