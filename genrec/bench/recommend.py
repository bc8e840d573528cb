"""`genrec bench recommend`: latency p50/p95 per mode and per stage at each concurrency, on real
user histories, with a roofline for rank (:mod:`genrec.bench.roofline`): FLOPs per request from
the model's shape and prefix-cache hits, against a bf16 GEMM peak measured in the same run on
the engine's thread count. Several thread bindings or model folders run side by side, one engine
each, and later runs are compared with the first."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from genrec.bench.retrieve import bench_histories
from genrec.bench.roofline import ModelShape, gemm_peak
from genrec.errors import GenrecError
from genrec.schema import STAGES, RecommendRequest
from genrec.settings import Settings
from genrec.stats import rounded_percentile

FOLLOWUP_QUERY = "something like these but lighter"
Say = Callable[[str], None]


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


def _progress(say: Say, runtime: dict[str, Any], cell: dict[str, Any]) -> None:
    turn = " turn 2" if cell.get("turn") else ""
    say(
        f"{runtime.get('threads_bind', 'remote')} {cell['mode']} c={cell['concurrency']}{turn}: "
        f"p50 {cell.get('total', {}).get('p50_ms')} ms, {cell.get('throughput_rps')} req/s "
        f"{cell.get('roofline', '')}"
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


async def _one_run(
    settings: Settings, index: Any, shape: Any, histories: list[list[str]], opts: dict, say: Say
) -> dict[str, Any]:
    """Every mode at every concurrency (and rank's second turn) on one engine."""
    from genrec.engines import engine_runtime
    from genrec.recommender import Recommender

    requests, levels, warmup = opts["requests"], opts["levels"], opts["warmup"]
    load = [round(x, 2) for x in os.getloadavg()]  # others' load on a shared machine
    t0 = time.perf_counter()
    async with Recommender(settings, index=index) as rec:
        startup = time.perf_counter() - t0
        runtime = engine_runtime(rec.engine)
        say(f"engine: {runtime}")
        # The peak on the engine's own thread count, once its worker stopped polling (vLLM's
        # worker spins for a second after its last step).
        await asyncio.sleep(1.5)
        threads = runtime.get("threads") or len(os.sched_getaffinity(0))
        dtype = runtime.get("dtype") or "bfloat16"
        gemm = await asyncio.to_thread(
            gemm_peak, threads, dtype, shape=shape, seconds=opts["gemm_seconds"]
        )
        say(f"GEMM on {threads} thread(s): {gemm}")
        cells = []
        for mode in opts["modes"]:
            fields = {
                "k": opts["k"],
                "candidates": opts["candidates"],
                "mode": mode,
                "retriever": opts["retriever"],
            }
            make = [
                RecommendRequest(history=h, **{f: v for f, v in fields.items() if v is not None})
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
                _progress(say, runtime, cells[-1])
            if mode == "rank" and opts["followup"]:
                # A conversation's second turn: the same user (history) asks for something;
                # the static text and the history are already in the prefix cache.
                first = make[warmup : warmup + requests]
                turn2 = [r.model_copy(update={"query": FOLLOWUP_QUERY}) for r in first]
                cell = await _bench_cell(rec, turn2, 1)
                if shape is not None:
                    cell["roofline"] = _roofline(cell, shape, gemm)
                del cell["_results"]
                cells.append({"mode": mode, "concurrency": 1, "turn": 2, **cell})
                _progress(say, runtime, cells[-1])
        return {
            "model_path": settings.model,
            "engine": runtime,
            "engine_startup_s": round(startup, 1),
            "load_average_at_start": load,
            "gemm": gemm,
            "model": rec.model_name,
            "retriever": rec.retrievers.get(opts["retriever"]).name,
            "cells": cells,
        }


async def run_recommend_bench(
    settings: Settings,
    index: Any,
    *,
    requests: int = 16,
    modes: Sequence[str] = ("rank", "likelihood", "generate", "describe"),
    levels: Sequence[int] = (1, 8),
    k: int = 10,
    candidates: int = 20,
    warmup: int = 2,
    retriever: str | None = None,
    bindings: Sequence[str] = (),
    models: Sequence[str] = (),
    followup: bool = True,
    gemm_seconds: float = 1.0,
    say: Say = lambda _msg: None,
) -> dict[str, Any]:
    """Every model (default: settings.model) with every thread binding (default: the settings'),
    one engine each, in order; returns the benchmark's JSON document."""
    from genrec.model_files import model_path

    opts = {
        "requests": requests,
        "modes": list(modes),
        "levels": list(levels),
        "k": k,
        "candidates": candidates,
        "warmup": warmup,
        "retriever": retriever,
        "followup": followup,
        "gemm_seconds": gemm_seconds,
    }
    n = requests * len(levels) + warmup
    histories = await asyncio.to_thread(bench_histories, n, index)
    runs = []
    for m in models or [settings.model]:
        model_settings = settings.model_copy(update={"model": m})
        try:
            folder = await asyncio.to_thread(model_path, model_settings)
            shape = ModelShape.from_config(folder)
        except (OSError, KeyError, ValueError) as exc:
            say(f"no roofline: cannot read the model's config ({exc})")
            shape = None
        for b in bindings or [settings.cpu_threads_bind]:
            run_settings = model_settings.model_copy(update={"cpu_threads_bind": b})
            runs.append(await _one_run(run_settings, index, shape, histories, opts, say))
    return _document(settings, runs, requests, k, candidates)


def _document(
    settings: Settings, runs: list[dict[str, Any]], requests: int, k: int, candidates: int
) -> dict[str, Any]:
    first = runs[0]
    p50 = {
        (c["mode"], c["concurrency"]): c.get("total", {}).get("p50_ms")
        for c in first["cells"]
        if not c.get("turn")
    }
    rank1, describe1 = p50.get(("rank", 1)), p50.get(("describe", 1))
    likelihood1 = p50.get(("likelihood", 1))
    return {
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
