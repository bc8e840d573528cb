"""Retrieval latency of one collection as a serving replica sees it (part of ``genrec bench
scale``), and the rank comparison against ML-100K.

:func:`retrieval_cells` times the request path's retrieve stage (``Recommender.retrieve_scored``:
history resolution, the retriever, its filters and item fetches; no LM) for each retriever, with
and without a metadata filter, at each concurrency (a thread pool, as the server's worker threads
run it). Run as a module it does that in a fresh process and reports the process's memory too: that
process holds what a replica holds for retrieval (the index, the item mirror, the retrievers), so
its RSS is the replica's retrieval memory (the LM engine's own memory does not depend on the
catalog):

    python -m genrec.bench.scale_latency SPEC.json    # prints one JSON document
"""

from __future__ import annotations

import gc
import json
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from genrec.stats import rounded_percentile

WARMUP = 5  # untimed requests per retriever first (lazy loads, first-touch pages)


def rss_mib() -> dict[str, float]:
    """This process's resident memory now and at its peak (Linux /proc), in MiB."""
    out: dict[str, float] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out["rss_mib" if key == "VmRSS" else "peak_rss_mib"] = round(
                    int(value.split()[0]) / 1024, 1
                )
    except OSError:
        pass
    return out


def histories_from_log(
    log: Path, n: int, *, length: int = 20, minimum: int = 5, seed: int = 0
) -> list[list[str]]:
    """``n`` users' last ``length`` items (oldest first) from a ``user_id,item_id,timestamp`` CSV,
    users with at least ``minimum`` events, chosen by the seed."""
    per_user: dict[str, list[tuple[int, str]]] = {}
    with log.open(encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            user, item, ts = line.rstrip("\n").split(",")[:3]
            per_user.setdefault(user, []).append((int(ts), item))
    users = sorted(u for u, events in per_user.items() if len(events) >= minimum)
    random.Random(seed).shuffle(users)
    out = []
    for user in users[:n]:
        items = [i for _, i in sorted(per_user[user])]
        out.append(list(dict.fromkeys(items))[-length:])
    return out


def timed(call: Callable[[Any], Any], args: Sequence[Any], concurrency: int) -> dict[str, Any]:
    """p50/p99 of each call's own latency and the throughput, at ``concurrency`` threads."""

    def one(arg: Any) -> float:
        t0 = time.perf_counter()
        call(arg)
        return (time.perf_counter() - t0) * 1000

    started = time.perf_counter()
    if concurrency == 1:
        ms = [one(a) for a in args]
    else:
        with ThreadPoolExecutor(concurrency) as pool:
            ms = list(pool.map(one, args))
    wall = time.perf_counter() - started
    return {
        "requests": len(args),
        "p50_ms": rounded_percentile(ms, 50, 3),
        "p99_ms": rounded_percentile(ms, 99, 3),
        "throughput_rps": round(len(args) / wall, 1) if wall > 0 else None,
    }


def retrieval_cells(spec: dict[str, Any], say: Callable[[str], None]) -> dict[str, Any]:
    """The latency cells for one collection; ``spec``: collection, log, requests, k, length,
    retrievers (names; "auto" = all served), concurrency (list), seed."""
    from genrec.index import CatalogIndex
    from genrec.index.filtered import settle_all
    from genrec.recommender import Recommender
    from genrec.retrieval import RetrievalQuery
    from genrec.retrieval.popular import PopularRetriever
    from genrec.retrieval.registry import load_retrievers
    from genrec.schema import RecommendRequest
    from genrec.settings import Settings

    settings = Settings.load(collection=spec["collection"])
    t0 = time.perf_counter()
    index = CatalogIndex(settings, spec["collection"])
    index.warm()
    retrievers = load_retrievers(settings, index)
    rec = Recommender(settings, index=index, retrievers=retrievers)
    gc.freeze()  # as Recommender.start does after loading
    loaded_s = round(time.perf_counter() - t0, 2)
    memory_loaded = rss_mib()
    levels = spec.get("concurrency") or [1, 8]
    n = spec["requests"]
    histories = histories_from_log(
        Path(spec["log"]), n * len(levels) + WARMUP, length=spec["length"], seed=spec["seed"]
    )
    # a filter that keeps the request answerable: the category of the user's latest item
    categories = {it.id: it.category for it in index.get([h[-1] for h in histories])}
    wanted = spec.get("retrievers") or ["auto"]
    names = sorted(retrievers.by_name) if wanted == ["auto"] else wanted
    cells: list[dict[str, Any]] = []
    for name in [*names, "popular"]:
        if name != "popular" and name not in retrievers.by_name:
            say(f"scale: retriever {name} is not served for {index.name}; skipped")
            continue
        for filtered in (False, True):
            requests = []
            for h in histories:
                where = {"category": categories.get(h[-1], "")} if filtered else None
                if name == "popular":  # a request with nothing to go on: an unknown user
                    requests.append(RetrievalQuery(text="", history=(), k=spec["k"], where=where))
                else:
                    requests.append(
                        RecommendRequest(
                            history=h,
                            candidates=spec["k"],
                            k=min(10, spec["k"]),
                            retriever=name,
                            filters=where,
                        )
                    )
            if name == "popular":
                popular = PopularRetriever(index)
                call: Callable[[Any], Any] = popular.retrieve
            else:

                def call(req: Any) -> Any:
                    return rec.retrieve_scored(rec.plan(req))

            first_ms = None
            if filtered and name != "popular":
                # Each filter's first request for this retriever, timed apart (its matching IDs
                # fetched unless an earlier retriever's cell did; its vectors fetched in the
                # background meanwhile): the cells then time a replica that has seen them.
                firsts: dict[str, Any] = {}
                for req in requests:
                    firsts.setdefault(json.dumps(req.filters, sort_keys=True), req)
                first_ms = timed(call, list(firsts.values()), 1)
                settle_all()
            for req in requests[:WARMUP]:
                call(req)
            for i, level in enumerate(levels):
                batch = requests[WARMUP + i * n : WARMUP + (i + 1) * n]
                cell = {"retriever": name, "filter": filtered, "concurrency": level}
                cell.update(timed(call, batch, level))
                if first_ms is not None:
                    cell["first_filter_use"] = first_ms
                cells.append(cell)
                say(
                    f"scale: {name}{' filtered' if filtered else ''} c={level}: "
                    f"p50 {cell['p50_ms']} ms, p99 {cell['p99_ms']} ms"
                )
    return {
        "collection": index.name,
        "items": index.count(),
        "default_retriever": retrievers.default,
        "load_s": loaded_s,
        "history_length": spec["length"],
        "k": spec["k"],
        "filter": "category of the history's latest item (1 of 12 categories)",
        "memory_after_load": memory_loaded,
        "memory_after_requests": rss_mib(),
        "cells": cells,
    }


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text())
    out = retrieval_cells(spec, lambda line: print(line, file=sys.stderr, flush=True))
    out["pid"] = os.getpid()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
