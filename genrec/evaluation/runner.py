"""Runs a suite: prepare (everything that can fail cheaply), then the matrix through the async
Recommender, one JSONL of per-request records per cell, then the numbers and the reports.

- ``prepare`` reads and splits the dataset, samples the users, checks every template and profile;
  it touches no engine, so bad input fails before any engine work.
- ``run`` opens the evaluation's own Chroma collection (only the filtered items), computes the
  baselines, then runs each cell with bounded concurrency. Each finished request is appended to
  ``OUT/cells/<cell>.jsonl`` at once, so an interrupted run resumes where it stopped; an engine
  error is recorded against its request and counted, never fatal to the run.
- Engine calls go through a ``CachingEngine``: an unchanged rerun costs no engine time and, when
  every answer is cached, never starts vLLM.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from genrec.evaluation import baselines as bl
from genrec.evaluation.aggregate import latency_samples
from genrec.evaluation.cache import CachingEngine, engine_identity
from genrec.evaluation.cells import read_records, request_for, run_cell
from genrec.evaluation.metrics import mean
from genrec.evaluation.prepare import (
    Prepared,
    PreparedCell,
    RunOptions,
    prepare,
    sample_cases,
)
from genrec.evaluation.report import write_reports
from genrec.evaluation.results import check_thresholds, environment, results_document
from genrec.evaluation.splits import EvalCase, training_counts
from genrec.settings import Settings

__all__ = [
    "Prepared",
    "RunOptions",
    "check_thresholds",
    "prepare",
    "read_records",
    "request_for",
    "run",
    "sample_cases",
]

# Settings that change the engine itself: a profile that overrides one needs its own engine.
ENGINE_FIELDS = frozenset(
    {
        "model",
        "model_cache",
        "engine_url",
        "engine_api_key",
        "dtype",
        "max_model_len",
        "kv_cache_gib",
        "max_logprobs",
        "engine_timeout_s",
    }
)


def open_index(prepared: Prepared, settings: Settings, embedder: Any = None) -> Any:
    """The evaluation's own collection, holding exactly the filtered catalog."""
    from genrec.index import CatalogIndex

    index = CatalogIndex(settings, prepared.collection, embedder)
    items = list(prepared.dataset.items.values())
    index.upsert(items, progress=prepared.options.progress, source=prepared.dataset.source)
    stale = set(index.ids()) - prepared.dataset.items.keys()
    if stale:  # a collection of that name built from other data: make it exactly this catalog
        index.delete(sorted(stale))
        index.upsert(items, progress=False, source=prepared.dataset.source)
    return index


def compute_baselines(prepared: Prepared, index: Any) -> tuple[list[dict], dict[str, list[str]]]:
    """Popularity, retrieval order and random order, on each distinct user sample of the cells."""
    suite, ks = prepared.suite, prepared.suite.ks
    n = suite.protocol.history_len
    candidates: dict[str, list[str]] = {}
    for case in prepared.cases:
        hits = index.search(
            history=list(case.history[-n:]), k=suite.candidates, exclude=list(case.history[:-n])
        )
        candidates[case.user_id] = [h.item.id for h in hits]
    scores = bl.popularity_scores(training_counts(prepared.dataset.cases), prepared.dataset.items)
    sizes = sorted({len(c.cases) for c in prepared.cells} | {len(prepared.cases)}, reverse=True)
    rows = []
    for size in sizes:
        cases = prepared.cases[:size]
        suffix = "" if size == len(prepared.cases) else f"[n={size}]"
        per_name: dict[str, Callable[[EvalCase], dict]] = {
            "popularity": lambda c: bl.popularity_metrics(c, scores, ks),
            "retrieval": lambda c: bl.retrieval_metrics(c, candidates[c.user_id], ks),
            "random": lambda c: bl.random_metrics(
                c, candidates[c.user_id], ks, seed=suite.protocol.seed
            ),
        }
        for name in suite.baselines:
            per_case = [per_name[name](c) for c in cases]
            metrics = {key: mean([m[key] for m in per_case]) for key in per_case[0]}
            if name != "popularity":
                metrics["candidate_recall"] = mean(
                    [1.0 if c.target in candidates[c.user_id] else 0.0 for c in cases]
                )
            rows.append(
                {
                    "id": f"baseline/{name}{suffix}",
                    "name": f"{name}{suffix}",
                    "mode": "baseline",
                    "users_completed": len(cases),
                    "metrics": metrics,
                }
            )
    return rows, candidates


def _engine_for(settings: Settings, shared: Any, shared_settings: Settings) -> tuple[Any, bool]:
    """(engine, created here): the caller's engine when the profile keeps its engine settings,
    else a new one (not started: the Recommender or the cache starts it when needed)."""
    if shared is not None and all(
        getattr(settings, f) == getattr(shared_settings, f) for f in ENGINE_FIELDS
    ):
        return shared, False
    from genrec.engines import make_engine

    return make_engine(settings), True


async def run(
    prepared: Prepared,
    settings: Settings,
    *,
    engine: Any = None,
    embedder: Any = None,
    index: Any = None,
    tokenizer: Any = None,
) -> dict:
    """Run every cell and write the reports; returns the results document.

    `engine` (optional, started or not) is used for profiles that keep the engine settings of
    `settings`; it is never shut down here unless this run started it (then it is, after each
    profile's cells). `tokenizer` is used only for profiles that keep the model of `settings`.
    """
    from genrec.recommender import Recommender

    opts, suite = prepared.options, prepared.suite
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    env = environment()  # the code that runs is the code at the start, not at the end
    t0 = time.perf_counter()
    cells_dir = opts.out / "cells"
    if opts.fresh and cells_dir.is_dir():
        for p in cells_dir.glob("*.jsonl"):
            p.unlink()
    index = index or open_index(prepared, settings, embedder)
    baseline_rows, _ = compute_baselines(prepared, index)

    concurrency = opts.concurrency or suite.concurrency
    records: dict[str, dict[str, dict]] = {}
    caches: list[CachingEngine] = []
    by_profile: dict[str, list[PreparedCell]] = {}
    for cell in prepared.cells:
        by_profile.setdefault(cell.spec.profile.name, []).append(cell)
    try:
        for cells in by_profile.values():
            pending = []
            for c in cells:
                path = cells_dir / f"{c.slug}.jsonl"
                records[c.id] = read_records(path, c.fingerprint, strict=not opts.report_only)
                if opts.report_only and path.is_file():
                    c.fingerprint = json.loads(path.open().readline())["fingerprint"]
                if any(u.user_id not in records[c.id] for u in c.cases):
                    pending.append(c)
            if not pending or opts.report_only:
                continue  # nothing to do (or not asked to): no engine, no Recommender
            s = cells[0].settings
            inner, created = _engine_for(s, engine, settings)
            was_up = bool(inner.healthy)
            if opts.cache_dir is not None:
                eng = CachingEngine(inner, opts.cache_dir, identity=engine_identity(s))
                caches.append(eng)
            else:
                eng = inner
            # The caller's tokenizer belongs to its model; another model loads its own.
            same_model = all(
                getattr(s, f) == getattr(settings, f) for f in ("model", "model_cache")
            )
            tok = tokenizer if same_model else None
            try:
                async with Recommender(s, index=index, engine=eng, tokenizer=tok) as rec:
                    for c in pending:
                        path = cells_dir / f"{c.slug}.jsonl"
                        records[c.id] = await run_cell(
                            rec, c, suite, path, concurrency, opts.progress
                        )
            finally:
                # Stop what this run started; an engine the caller passed in running stays up.
                if isinstance(eng, CachingEngine):
                    await eng.shutdown()
                elif created or (not was_up and inner.healthy):
                    # Created here, or handed in stopped and started by the Recommender (which
                    # stops only engines it made itself): this run started it, this run stops it.
                    await inner.shutdown()
    finally:
        for cache in caches:
            cache.close()

    doc = results_document(
        prepared, records, baseline_rows, started_at, time.perf_counter() - t0, env
    )
    samples = {}
    for cell in prepared.cells:
        cell_records = [
            records[cell.id][c.user_id] for c in cell.cases if c.user_id in records[cell.id]
        ]
        samples[cell.id] = latency_samples(cell_records)
    doc["engine_cache"] = {
        "dir": str(opts.cache_dir) if opts.cache_dir else None,
        "hits": sum(c.hits for c in caches),
        "misses": sum(c.misses for c in caches),
        "inner_calls": sum(c.inner_calls for c in caches),
    }
    doc["reports"] = {k: str(v) for k, v in write_reports(doc, opts.out, samples).items()}
    # write again so results.json lists the report paths too
    (opts.out / "results.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return doc
