"""`genrec bench recommend` and `genrec bench retrieve`: latency on the embedded default, as
JSON on stdout (progress on stderr)."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from genrec.cli.common import (
    ConfigOption,
    handles_errors,
    load_settings,
    print_json,
    stdout_to_stderr,
)
from genrec.cli.core import _request, _settings, open_catalog
from genrec.errors import GenrecError
from genrec.schema import STAGES
from genrec.stats import rounded_percentile


def register(app: typer.Typer, bench: typer.Typer) -> None:
    bench.command("recommend")(bench_recommend_command)
    bench.command("retrieve")(bench_retrieve_command)


def bench_histories(n: int, index: Any, *, length: int = 5, seed: int = 0) -> list[list[str]]:
    """Real user histories from ML-100K (each user's last ``length`` well-rated items), limited to
    items in the catalog; random catalog items when that data is not there."""
    import random

    ids = set()
    try:
        from genrec.movielens import ml100k_dir

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


async def _bench_cell(rec: Any, requests: list[Any], concurrency: int) -> dict[str, Any]:
    started = time.perf_counter()
    results = await rec.recommend_many(requests, concurrency=concurrency)
    wall = time.perf_counter() - started
    ok = [r for r in results if not isinstance(r, GenrecError)]
    errors = [f"{type(r).__name__}: {r.message}" for r in results if isinstance(r, GenrecError)]
    cell: dict[str, Any] = {
        "requests": len(requests),
        "ok": len(ok),
        "errors": errors[:5],
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(ok) / wall, 2) if wall > 0 else None,
    }
    if ok:
        for stage in STAGES:
            values = [getattr(r.timings, f"{stage}_ms") for r in ok]
            cell[stage] = {
                "p50_ms": rounded_percentile(values, 50),
                "p95_ms": rounded_percentile(values, 95),
                "mean_ms": round(statistics.fmean(values), 1),
            }
        cell["prompt_tokens_mean"] = round(statistics.fmean(r.usage.prompt_tokens for r in ok), 1)
        cell["completion_tokens_mean"] = round(
            statistics.fmean(r.usage.completion_tokens for r in ok), 1
        )
    return cell


@handles_errors
def bench_recommend_command(
    requests: int = typer.Option(16, "--requests", help="Timed requests per mode and concurrency."),
    modes: str = typer.Option(
        "rank,likelihood,generate,describe", "--modes", help="Comma-separated."
    ),
    concurrency: Annotated[
        list[int] | None, typer.Option("--concurrency", help="Repeatable; default 1 and 8.")
    ] = None,
    k: int = typer.Option(10, "--k"),
    candidates: int = typer.Option(20, "--candidates"),
    warmup: int = typer.Option(2, "--warmup", help="Untimed requests per mode first."),
    retriever: str | None = typer.Option(
        None, "--retriever", help="content | itemknn | ease | sasrec | hybrid (default: auto)."
    ),
    config: Path | None = ConfigOption,
) -> None:
    """Latency p50/p95 per mode and per stage, at concurrency 1 and 8, on the embedded default
    (ML-100K, real user histories, 20 candidates, k=10). Prints JSON."""
    from genrec.recommender import Recommender

    settings = _settings(config)
    levels = concurrency or [1, 8]
    mode_list = [m.strip() for m in modes.split(",") if m.strip()]

    async def run() -> dict[str, Any]:
        index = await asyncio.to_thread(open_catalog, settings)
        t0 = time.perf_counter()
        async with Recommender(settings, index=index) as rec:
            startup = time.perf_counter() - t0
            histories = await asyncio.to_thread(
                bench_histories, requests * len(levels) + warmup, index
            )
            cells = []
            for mode in mode_list:
                make = [
                    _request(history=h, k=k, candidates=candidates, mode=mode, retriever=retriever)
                    for h in histories
                ]
                for req in make[:warmup]:
                    await rec.recommend(req)
                for i, level in enumerate(levels):
                    batch = make[warmup + i * requests : warmup + (i + 1) * requests]
                    cell = await _bench_cell(rec, batch, level)
                    cells.append({"mode": mode, "concurrency": level, **cell})
                    typer.echo(
                        f"{mode} c={level}: p50 {cell.get('total', {}).get('p50_ms')} ms",
                        err=True,
                    )
            return {
                "startup_s": round(startup, 1),
                "model": rec.model_name,
                "retriever": rec.retrievers.get(retriever).name,
                "cells": cells,
            }

    with stdout_to_stderr():
        out = asyncio.run(run())
    p50 = {(c["mode"], c["concurrency"]): c.get("total", {}).get("p50_ms") for c in out["cells"]}
    rank1, describe1 = p50.get(("rank", 1)), p50.get(("describe", 1))
    likelihood1 = p50.get(("likelihood", 1))
    print_json(
        {
            "benchmark": "recommend",
            "engine": "remote" if settings.engine_url else "in-process",
            "model": out["model"],
            "catalog": settings.collection,
            "retriever": out["retriever"],
            "candidates": candidates,
            "k": k,
            "cpus": os.cpu_count(),
            "engine_startup_s": out["startup_s"],
            "requests_per_cell": requests,
            "histories": "ML-100K users' last 5 items rated >= 4 (distinct per request)",
            "describe_over_rank_p50": round(describe1 / rank1, 2) if rank1 and describe1 else None,
            "likelihood_over_rank_p50": (
                round(likelihood1 / rank1, 2) if rank1 and likelihood1 else None
            ),
            "cells": out["cells"],
        }
    )


@handles_errors
def bench_retrieve_command(
    requests: int = typer.Option(200, "--requests", help="Timed requests per retriever."),
    k: int = typer.Option(20, "--k", help="Candidates per request."),
    length: int = typer.Option(50, "--length", help="History items per request."),
    config: Path | None = ConfigOption,
) -> None:
    """Retrieval latency p50/p99 of every retriever the default collection serves (no LM), on
    real ML-100K user histories. Prints JSON."""
    from genrec.retrieval import RetrievalQuery
    from genrec.retrieval.registry import load_retrievers

    settings = load_settings(config)
    index = open_catalog(settings)
    index.warm()
    retrievers = load_retrievers(settings, index)
    histories = bench_histories(requests + 10, index, length=length)
    queries = [RetrievalQuery(text="", history=tuple(index.get(h)), k=k) for h in histories]
    cells = {}
    for name, retriever in sorted(retrievers.by_name.items()):
        for q in queries[:10]:  # warm-up: first calls load lazily
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
        typer.echo(f"{name}: p50 {cells[name]['p50_ms']} ms", err=True)
    print_json(
        {
            "benchmark": "retrieve",
            "catalog": index.name,
            "default": retrievers.default,
            "requests": requests,
            "k": k,
            "history_length": length,
            "retrievers": cells,
        }
    )
