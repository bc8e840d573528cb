"""`genrec bench index`, the multilingual part: the packaged Chinese catalog (zh-shop) ingested
with multilingual-e5-small into a fresh temporary home, the lexical (BM25) index built, and
top-20 searches timed on each channel (dense, lexical, fused) over the query set's texts."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from genrec.bench.index import percentiles, timed
from genrec.settings import Settings


def run_zh_bench(settings: Settings, *, queries: int = 200) -> dict:
    from genrec.data.catalog_files import load_dataset
    from genrec.datasets import zh_shop_queries
    from genrec.embeddings import Embedder
    from genrec.index import CatalogIndex
    from genrec.index.lexical import lexical_text
    from genrec.languages import words

    tmp = Path(tempfile.mkdtemp(prefix="genrec-bench-zh-"))
    bench = settings.model_copy(
        update={
            "home": tmp,
            "model_cache": settings.models_dir,
            "embedding_model": "multilingual-e5-small",
            "lexical": "on",
        }
    )
    try:
        items = load_dataset("zh-shop")
        t0 = time.perf_counter()
        embedder = Embedder(bench)
        embedder.encode(["加载模型"])
        model_s = time.perf_counter() - t0
        index = CatalogIndex(bench, "bench-zh-shop", embedder)
        t1 = time.perf_counter()
        report = index.upsert(items, progress=True, source="zh-shop")
        ingest_s = time.perf_counter() - t1
        # the lexical part alone: segmenting every item and building BM25 again
        t2 = time.perf_counter()
        index.lexical.build(items, str(index.metadata.get("genrec_digest")))
        lexical_build_s = time.perf_counter() - t2
        t3 = time.perf_counter()
        for item in items:
            words(lexical_text(item))
        segment_ms = (time.perf_counter() - t3) * 1000 / len(items)
        import json

        texts = [json.loads(line)["query"] for line in zh_shop_queries().open(encoding="utf-8")]
        texts = (texts * (queries // len(texts) + 1))[:queries]
        # distinct strings, so the query-vector cache flatters nothing
        texts = [f"{t} {i}" for i, t in enumerate(texts)]
        for text in texts[:5]:
            index.search(text, k=20)
        per_channel = {}
        for channel in ("dense", "lexical", "fused"):
            index.forget_queries()  # each channel embeds its queries itself
            ms = timed(lambda q, c=channel: index.search(q, k=20, channel=c), texts)
            per_channel[channel] = percentiles(ms)
        query_embed_ms = timed(lambda q: embedder.encode([q + "?"], query=True), texts[:50])
        return {
            "items": len(items),
            "embedding_model": embedder.model_id,
            "embedding_backend": embedder.backend,
            "model_load_s": round(model_s, 2),
            "ingest": {
                "seconds": round(ingest_s, 2),
                "items_per_s": round(len(items) / ingest_s, 1),
                "written": report.written,
            },
            "lexical_build_s": round(lexical_build_s, 3),
            "segment_ms_per_item": round(segment_ms, 3),
            "query_embed_ms": percentiles(query_embed_ms),
            "search_ms": per_channel,
            "k": 20,
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
