"""`genrec bench retrieve`: retrieval latency of every retriever a collection serves (no LM), on
real user histories; and those histories, which `genrec bench recommend` uses too."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

from genrec.errors import GenrecError
from genrec.settings import Settings
from genrec.stats import rounded_percentile


def bench_histories(n: int, index: Any, *, length: int = 5, seed: int = 0) -> list[list[str]]:
    """Real user histories from ML-100K (each user's last ``length`` well-rated items), limited to
    items in the catalog; random catalog items when that data is not there."""
    try:
        from genrec.data.movielens import ml100k_dir

        path = ml100k_dir() / "ml-100k.inter"
        per_user: dict[str, list[tuple[int, str]]] = {}
        with open(path, encoding="utf-8") as fh:
            next(fh)
            for line in fh:
                user, item, rating, ts = line.rstrip("\n").split("\t")[:4]
                if float(rating) >= 4:
                    per_user.setdefault(user, []).append((int(ts), item))
        known = {i.id for i in index.get(sorted({it for v in per_user.values() for _, it in v}))}
        rng = random.Random(seed)
        users = sorted(per_user, key=int)
        rng.shuffle(users)
        out = []
        for user in users:
            items = [it for _, it in sorted(per_user[user]) if it in known][-length:]
            if len(items) == length:
                out.append(items)
            if len(out) == n:
                return out
    except (OSError, StopIteration, GenrecError):
        pass
    rng = random.Random(seed)
    ids = sorted(index.ids())
    return [rng.sample(ids, min(length, len(ids))) for _ in range(n)]


def run_retrieve_bench(
    settings: Settings,
    index: Any,
    *,
    requests: int = 200,
    k: int = 20,
    length: int = 50,
    say: Callable[[str], None] = lambda _msg: None,
) -> dict[str, Any]:
    """p50/p99 per retriever over ``requests`` histories of ``length`` items, after 10 untimed
    ones (first calls load lazily)."""
    from genrec.retrieval import RetrievalQuery
    from genrec.retrieval.registry import load_retrievers

    index.warm()
    retrievers = load_retrievers(settings, index)
    histories = bench_histories(requests + 10, index, length=length)
    queries = [RetrievalQuery(text="", history=tuple(index.get(h)), k=k) for h in histories]
    cells = {}
    for name, retriever in sorted(retrievers.by_name.items()):
        for q in queries[:10]:
            retriever.retrieve(q)
        ms = []
        for q in queries[10:]:
            t0 = time.perf_counter()
            retriever.retrieve(q)
            ms.append((time.perf_counter() - t0) * 1000)
        cells[name] = {
            "p50_ms": rounded_percentile(ms, 50),
            "p99_ms": rounded_percentile(ms, 99),
        }
        say(f"{name}: p50 {cells[name]['p50_ms']} ms")
    return {
        "benchmark": "retrieve",
        "catalog": index.name,
        "default": retrievers.default,
        "requests": requests,
        "k": k,
        "history_length": length,
        "retrievers": cells,
    }
