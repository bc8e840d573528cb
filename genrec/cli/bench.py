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

from genrec.cli.bench_scale import bench_scale_command
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
    bench.command("scale")(bench_scale_command)


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
        cell["cached_tokens_mean"] = round(statistics.fmean(r.usage.cached_tokens for r in ok), 1)
        cell["completion_tokens_mean"] = round(
            statistics.fmean(r.usage.completion_tokens for r in ok), 1
        )
    cell["_results"] = ok  # for the roofline; removed before printing
    return cell


FOLLOWUP_QUERY = "something like these but lighter"


def _progress(runtime: dict[str, Any], cell: dict[str, Any]) -> None:
    turn = " turn 2" if cell.get("turn") else ""
    typer.echo(
        f"{runtime.get('threads_bind', 'remote')} {cell['mode']} c={cell['concurrency']}{turn}: "
        f"p50 {cell.get('total', {}).get('p50_ms')} ms, {cell.get('throughput_rps')} req/s "
        f"{cell.get('roofline', '')}",
        err=True,
    )


def _roofline(cell: dict[str, Any], shape: Any, gemm: dict[str, Any]) -> dict[str, Any]:
    """A rank cell's FLOPs against the GEMM peak measured in the same run: per request (the LLM
    stage's own time, meaningful at concurrency 1) and per wall second (the batched engine)."""
    ok = cell["_results"]
    if not ok:
        return {}
    flops = [shape.prefill_flops(r.usage.prompt_tokens, r.usage.cached_tokens) for r in ok]
    llm_s = sum(r.timings.llm_ms for r in ok) / 1000
    prompt = sum(r.usage.prompt_tokens for r in ok)
    cached = sum(r.usage.cached_tokens for r in ok)
    out: dict[str, Any] = {
        "new_tokens_mean": round((prompt - cached) / len(ok), 1),
        "prefix_cache_hit_rate": round(cached / prompt, 3) if prompt else None,
        "gflop_per_request": round(statistics.fmean(flops) / 1e9, 2),
        "llm_gflops": round(sum(flops) / llm_s / 1e9, 1) if llm_s else None,
        "wall_gflops": round(sum(flops) / cell["wall_s"] / 1e9, 1) if cell["wall_s"] else None,
    }
    for name in ("llm", "wall"):
        achieved = out[f"{name}_gflops"]
        if achieved:
            out[f"{name}_of_peak"] = round(achieved / gemm["peak_gflops"], 3)
            if gemm.get("model_shapes_gflops"):
                out[f"{name}_of_model_shapes"] = round(achieved / gemm["model_shapes_gflops"], 3)
    return out


def _compare(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each later run against the first, cell by cell: p50 and requests/s ratios."""
    base = {(c["mode"], c["concurrency"], c.get("turn")): c for c in runs[0]["cells"]}
    out = []
    for run in runs[1:]:
        cells = []
        for c in run["cells"]:
            b = base.get((c["mode"], c["concurrency"], c.get("turn")))
            p50, bp50 = c.get("total", {}).get("p50_ms"), (b or {}).get("total", {}).get("p50_ms")
            rps, brps = c.get("throughput_rps"), (b or {}).get("throughput_rps")
            cells.append(
                {
                    "mode": c["mode"],
                    "concurrency": c["concurrency"],
                    **({"turn": c["turn"]} if c.get("turn") else {}),
                    "p50_ratio": round(p50 / bp50, 3) if p50 and bp50 else None,
                    "rps_ratio": round(rps / brps, 3) if rps and brps else None,
                }
            )
        out.append(
            {
                "binding": run["engine"].get("threads_bind"),
                "against": runs[0]["engine"].get("threads_bind"),
                "model": run["model"],
                "against_model": runs[0]["model"],
                "cells": cells,
            }
        )
    return out


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
    binding: Annotated[
        list[str] | None,
        typer.Option(
            "--binding",
            help="Thread binding(s) to run side by side, one engine each, in order (repeatable: "
            "auto, all, vllm, nobind or a CPU list); ratios are against the first. "
            "Default: GENREC_CPU_THREADS_BIND.",
        ),
    ] = None,
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            help="Model folder(s) to run side by side (repeatable; e.g. a bf16 and an int8 "
            "checkpoint of one model), each with every --binding. Default: GENREC_MODEL.",
        ),
    ] = None,
    followup: bool = typer.Option(
        True,
        "--followup/--no-followup",
        help="Also time rank as a second turn of each user's conversation (prefix-cache hits).",
    ),
    gemm_seconds: float = typer.Option(
        1.0, "--gemm-seconds", help="Time for the GEMM peak measurement per binding."
    ),
    config: Path | None = ConfigOption,
) -> None:
    """Latency p50/p95 per mode and per stage, at concurrency 1 and 8, on the embedded default
    (ML-100K, real user histories, 20 candidates, k=10), with a roofline for rank: FLOPs per
    request from the model's shape and prefix-cache hits, against a bf16 GEMM peak measured in
    the same run on the engine's thread count. Prints JSON."""
    from genrec.engines import engine_runtime
    from genrec.engines.hardware import check_threads_bind
    from genrec.model_files import model_path
    from genrec.recommender import Recommender
    from genrec.roofline import ModelShape, gemm_peak

    settings = _settings(config)
    levels = concurrency or [1, 8]
    mode_list = [m.strip() for m in modes.split(",") if m.strip()]
    bindings = binding or [settings.cpu_threads_bind]
    for b in bindings:
        try:
            check_threads_bind(b)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--binding") from None

    async def one_run(run_settings: Any, index: Any, shape: Any) -> dict[str, Any]:
        load = [round(x, 2) for x in os.getloadavg()]  # others' load on a shared machine
        t0 = time.perf_counter()
        async with Recommender(run_settings, index=index) as rec:
            startup = time.perf_counter() - t0
            runtime = engine_runtime(rec.engine)
            typer.echo(f"engine: {runtime}", err=True)
            # The peak on the engine's own thread count, once its worker stopped polling (vLLM's
            # worker spins for a second after its last step).
            await asyncio.sleep(1.5)
            threads = runtime.get("threads") or len(os.sched_getaffinity(0))
            dtype = runtime.get("dtype") or "bfloat16"
            gemm = await asyncio.to_thread(
                gemm_peak, threads, dtype, shape=shape, seconds=gemm_seconds
            )
            typer.echo(f"GEMM on {threads} thread(s): {gemm}", err=True)
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
                    if mode == "rank" and shape is not None:
                        cell["roofline"] = _roofline(cell, shape, gemm)
                    del cell["_results"]
                    cells.append({"mode": mode, "concurrency": level, **cell})
                    _progress(runtime, cells[-1])
                if mode == "rank" and followup:
                    # A conversation's second turn: the same user (history) asks for something;
                    # the static text and the history are already in the prefix cache.
                    first = make[warmup : warmup + requests]
                    turn2 = [r.model_copy(update={"query": FOLLOWUP_QUERY}) for r in first]
                    cell = await _bench_cell(rec, turn2, 1)
                    if shape is not None:
                        cell["roofline"] = _roofline(cell, shape, gemm)
                    del cell["_results"]
                    cells.append({"mode": mode, "concurrency": 1, "turn": 2, **cell})
                    _progress(runtime, cells[-1])
            return {
                "model_path": run_settings.model,
                "engine": runtime,
                "engine_startup_s": round(startup, 1),
                "load_average_at_start": load,
                "gemm": gemm,
                "model": rec.model_name,
                "retriever": rec.retrievers.get(retriever).name,
                "cells": cells,
            }

    async def run() -> list[dict[str, Any]]:
        index = await asyncio.to_thread(open_catalog, settings)
        runs = []
        for m in models or [settings.model]:
            model_settings = settings.model_copy(update={"model": m})
            try:
                folder = await asyncio.to_thread(model_path, model_settings)
                shape = ModelShape.from_config(folder)
            except (OSError, KeyError, ValueError) as exc:
                typer.echo(f"no roofline: cannot read the model's config ({exc})", err=True)
                shape = None
            for b in bindings:
                run_settings = model_settings.model_copy(update={"cpu_threads_bind": b})
                runs.append(await one_run(run_settings, index, shape))
        return runs

    with stdout_to_stderr():
        runs = asyncio.run(run())
    first = runs[0]
    p50 = {
        (c["mode"], c["concurrency"]): c.get("total", {}).get("p50_ms")
        for c in first["cells"]
        if not c.get("turn")
    }
    rank1, describe1 = p50.get(("rank", 1)), p50.get(("describe", 1))
    likelihood1 = p50.get(("likelihood", 1))
    print_json(
        {
            "benchmark": "recommend",
            "engine": "remote" if settings.engine_url else "in-process",
            "model": first["model"],
            "catalog": settings.collection,
            "retriever": first["retriever"],
            "candidates": candidates,
            "k": k,
            "cpus": os.cpu_count(),
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "engine_startup_s": first["engine_startup_s"],
            "requests_per_cell": requests,
            "histories": "ML-100K users' last 5 items rated >= 4 (distinct per request)",
            "describe_over_rank_p50": round(describe1 / rank1, 2) if rank1 and describe1 else None,
            "likelihood_over_rank_p50": (
                round(likelihood1 / rank1, 2) if rank1 and likelihood1 else None
            ),
            "binding": first["engine"],
            "gemm": first["gemm"],
            "cells": first["cells"],
            "runs": runs,
            "comparison": _compare(runs) if len(runs) > 1 else [],
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
