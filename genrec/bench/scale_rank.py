"""A rank request on a big collection against the same request shape on ML-100K (part of ``genrec
bench scale``): one LM engine, the two collections' requests interleaved one by one, so load on a
shared machine falls on both alike. The ratio of the p50s is what the catalog's size costs a rank
request; prompt tokens are reported beside it (titles differ in length between the catalogs)."""

from __future__ import annotations

import asyncio
import random
import statistics
from pathlib import Path
from typing import Any

from genrec.bench.scale_latency import histories_from_log
from genrec.settings import Settings
from genrec.stats import rounded_percentile

SHAPE = {"mode": "rank", "candidates": 20, "k": 10, "history": 5}
WARMUP = 3


def ml100k_histories(n: int, length: int, seed: int) -> list[list[str]]:
    """ML-100K users' last ``length`` items rated 4 or 5 (oldest first), chosen by the seed."""
    from genrec.data.movielens import ml100k_dir

    per_user: dict[str, list[tuple[int, str]]] = {}
    with (ml100k_dir() / "ml-100k.inter").open(encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            user, item, rating, ts = line.rstrip("\n").split("\t")[:4]
            if float(rating) >= 4:
                per_user.setdefault(user, []).append((int(ts), item))
    users = sorted(u for u, events in per_user.items() if len(events) >= length)
    random.Random(seed).shuffle(users)
    return [[i for _, i in sorted(per_user[u])][-length:] for u in users[:n]]


def rank_comparison(
    settings: Settings,
    collection: str,
    log: Path,
    options: Any,
    say: Any,
    *,
    engine: Any = None,
) -> dict[str, Any]:
    """Both collections' rank p50 (total and per stage) and their ratio; ``engine``: a running
    engine to share (else one is started and stopped here)."""
    return asyncio.run(_compare(settings, collection, log, options, say, engine))


async def _compare(
    settings: Settings, collection: str, log: Path, options: Any, say: Any, engine: Any
) -> dict[str, Any]:
    from genrec.engines import make_engine
    from genrec.ingest import open_catalog
    from genrec.recommender import Recommender
    from genrec.schema import RecommendRequest

    n = options.rank_requests + WARMUP
    length = SHAPE["history"]
    shape = {k: v for k, v in SHAPE.items() if k != "history"}
    big = await asyncio.to_thread(open_catalog, settings, collection)
    small = await asyncio.to_thread(open_catalog, settings, "ml-100k")
    requests = {
        "scale": [
            RecommendRequest(history=h, retriever=options.rank_retriever, **shape)
            for h in histories_from_log(log, n, length=length, seed=options.seed + 1)
        ],
        "ml-100k": [
            RecommendRequest(history=h, retriever=options.rank_retriever, **shape)
            for h in ml100k_histories(n, length, options.seed + 1)
        ],
    }
    # whoever starts the engine stops it: the first Recommender when none was given
    engine = engine or make_engine(settings)
    results: dict[str, list[Any]] = {"scale": [], "ml-100k": []}
    say("scale: rank requests, this collection and ML-100K interleaved ...")
    async with Recommender(settings, index=big, engine=engine) as on_big:
        small_settings = settings.model_copy(update={"collection": small.name})
        async with Recommender(
            small_settings, index=small, engine=on_big.engine, tokenizer=on_big.tokenizer
        ) as on_small:
            for i in range(min(len(requests["scale"]), len(requests["ml-100k"]))):
                for name, rec in (("scale", on_big), ("ml-100k", on_small)):
                    result = await rec.recommend(requests[name][i])
                    if i >= WARMUP:
                        results[name].append(result)
    cells = {name: _cell(rs) for name, rs in results.items()}
    big_p50 = cells["scale"]["total"]["p50_ms"]
    small_p50 = cells["ml-100k"]["total"]["p50_ms"]
    ratio = round(big_p50 / small_p50, 3) if big_p50 and small_p50 else None
    say(f"scale: rank p50 {big_p50} ms here, {small_p50} ms on ML-100K (ratio {ratio})")
    big_cell, small_cell = cells["scale"], cells["ml-100k"]
    return {
        "shape": {**SHAPE, "retriever": options.rank_retriever},
        "requests": options.rank_requests,
        "cells": cells,
        "p50_ratio": ratio,
        # what the catalog's size costs, apart from the LM reading longer titles
        "retrieve_p50_ratio": _ratio(
            big_cell["retrieve"]["p50_ms"], small_cell["retrieve"]["p50_ms"]
        ),
        "prompt_tokens_ratio": _ratio(
            big_cell.get("prompt_tokens_mean"), small_cell.get("prompt_tokens_mean")
        ),
        "computed_tokens_ratio": _ratio(*(_computed(c) for c in (big_cell, small_cell))),
    }


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def _computed(cell: dict[str, Any]) -> float | None:
    if "prompt_tokens_mean" not in cell:
        return None
    return cell["prompt_tokens_mean"] - cell["cached_tokens_mean"]


def _cell(results: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"requests": len(results)}
    for stage in ("retrieve", "render", "llm", "ground", "total"):
        values = [getattr(r.timings, f"{stage}_ms") for r in results]
        out[stage] = {
            "p50_ms": rounded_percentile(values, 50),
            "p99_ms": rounded_percentile(values, 99),
        }
    if results:
        out["prompt_tokens_mean"] = round(statistics.fmean(r.usage.prompt_tokens for r in results))
        # what vLLM's prefix cache served (the shared system prompt): the rest is computed
        out["cached_tokens_mean"] = round(statistics.fmean(r.usage.cached_tokens for r in results))
    return out
