"""`genrec bench index`: ingest a MovieLens folder into a fresh temporary collection and time
text and history searches (the multilingual part is :mod:`genrec.bench.index_zh`)."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from genrec.settings import Settings
from genrec.stats import rounded_percentile


def run_index_bench(settings: Settings, folder: Path, *, queries: int = 200) -> dict:
    """Ingest ``folder`` into a fresh temporary collection (a temporary Chroma folder, or a
    temporary collection on the configured server), time searches, clean up, return figures."""
    from genrec.data.movielens import load_movielens_folder
    from genrec.embeddings import Embedder
    from genrec.index import CatalogIndex

    tmp = Path(tempfile.mkdtemp(prefix="genrec-bench-"))
    # A fresh Chroma folder; the model cache stays the user's (a one-time export is set-up).
    bench_settings = settings.model_copy(update={"home": tmp, "model_cache": settings.models_dir})
    name = f"bench-{os.getpid()}-{int(time.time())}"
    try:
        started, cpu_started = time.perf_counter(), time.process_time()
        items = load_movielens_folder(folder)
        loaded = time.perf_counter()
        embedder = Embedder(bench_settings)
        embedder.encode(["load the model"])
        model_ready = time.perf_counter()
        index = CatalogIndex(bench_settings, name, embedder)
        report = index.upsert(items, progress=True, source=str(folder))
        done, cpu_done = time.perf_counter(), time.process_time()
        again = index.upsert(items, progress=False, source=str(folder))
        rng = random.Random(0)
        texts = _bench_texts(items, rng, queries)
        histories = _bench_histories(folder, items, rng, queries)
        warm_started = time.perf_counter()
        index.warm()  # what a server does before its first request: the item mirror, title maps
        warm_s = time.perf_counter() - warm_started
        for text in texts[:10]:  # warm up code paths, not timed
            index.search(text, k=20)
        text_ms = timed(lambda q: index.search(q, k=20), texts)
        history_ms = timed(lambda h: index.search(history=h, k=20), histories)
        index.drop()
        total = done - started
        return {
            "data": str(folder),
            "items": len(items),
            "chroma": "http" if settings.chroma_url else "embedded",
            "ingest": {
                "items_per_s": round(len(items) / total, 1),
                "seconds": round(total, 2),
                "load_s": round(loaded - started, 2),
                "model_load_s": round(model_ready - loaded, 2),
                "embed_write_s": round(done - model_ready, 2),
                "written": report.written,
                # CPU seconds this process got: on a shared machine, wall time overstates cost
                "cpu_s": round(cpu_done - cpu_started, 2),
            },
            "reingest": {"seconds": round(again.seconds, 3), "written": again.written},
            "warm_s": round(warm_s, 3),
            "search_text_ms": percentiles(text_ms),
            "search_history_ms": percentiles(history_ms),
            "k": 20,
            "embedding_backend": embedder.backend,
            "cpus": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _bench_texts(items: list, rng: random.Random, n: int) -> list[str]:
    """Distinct, plausible queries (no repeats, so no cache flatters the numbers)."""
    texts: list[str] = []
    for item in rng.sample(items, min(n, len(items))):
        genres = " and ".join(item.tags[:2]).lower() or "good"
        texts.append(f"{genres} movies like {item.title}")
    return texts


def _bench_histories(folder: Path, items: list, rng: random.Random, n: int) -> list[list[str]]:
    """Real users' last 10 ratings when ratings.csv is there, else random items."""
    ratings = folder / "ratings.csv"
    known = {item.id for item in items}
    if ratings.is_file():
        by_user: dict[str, list[tuple[int, str]]] = {}
        for line in ratings.read_text(encoding="utf-8").splitlines()[1:]:
            user, movie, _, ts = line.split(",")
            if movie in known:
                by_user.setdefault(user, []).append((int(ts), movie))
        users = rng.sample(sorted(by_user), min(n, len(by_user)))
        return [[m for _, m in sorted(by_user[u])[-10:]] for u in users]
    ids = [item.id for item in items]
    return [rng.sample(ids, 10) for _ in range(n)]


def timed(fn, inputs: list) -> list[float]:
    out = []
    for x in inputs:
        t = time.perf_counter()
        fn(x)
        out.append((time.perf_counter() - t) * 1000)
    return out


def percentiles(ms: list[float]) -> dict:
    return {
        "p50": rounded_percentile(ms, 50, 2),
        "p99": rounded_percentile(ms, 99, 2),
        "mean": round(float(np.mean(ms)), 2),
        "n": len(ms),
    }
