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
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from genrec.engines import engine_identity, engine_settings, make_engine
from genrec.evaluation import baselines as bl
from genrec.evaluation.aggregate import latency_samples
from genrec.evaluation.cache import CachingEngine
from genrec.evaluation.cells import read_records, request_for, run_cell
from genrec.evaluation.fidelity import (
    cell_fidelity,
    read_rows,
    retrieval_fidelity,
    summarise_rows,
)
from genrec.evaluation.metrics import candidate_recall, mean
from genrec.evaluation.prepare import (
    Prepared,
    PreparedCell,
    RunOptions,
    prepare,
    sample_cases,
    suite_settings,
)
from genrec.evaluation.report import write_reports
from genrec.evaluation.results import check_thresholds, environment, results_document
from genrec.evaluation.retrievers import prepare_retrievers
from genrec.evaluation.splits import EvalCase
from genrec.evaluation.suite import input_suffix
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


def open_index(prepared: Prepared, settings: Settings, embedder: Any = None) -> Any:
    """The evaluation's own collection, holding exactly the filtered catalog."""
    from genrec.index import CatalogIndex

    index = CatalogIndex(settings, prepared.collection, embedder)
    # A collection of that name built from other data becomes exactly this catalog.
    items = list(prepared.dataset.items.values())
    index.sync(items, progress=prepared.options.progress, source=prepared.dataset.source)
    return index


def compute_baselines(
    prepared: Prepared, index: Any, retrievers: Any = None
) -> tuple[list[dict], dict[str, dict[str, dict]]]:
    """Popularity, each retriever's order, and a random order of the default retriever's
    candidates (what the LM cells re-rank), on each distinct user sample of the cells and (the
    stated-need protocol) once per input. Returns the rows and, per row, each case's metrics
    (for the paired comparisons and the cold-item view)."""
    from genrec.evaluation.retrievers import candidate_lists
    from genrec.retrieval.registry import content_only

    suite, ks = prepared.suite, prepared.suite.ks
    retrievers = retrievers or content_only(index)
    scores = bl.popularity_scores(training_counts_of(prepared), prepared.dataset.items)
    sizes = sorted({len(c.cases) for c in prepared.cells} | {len(prepared.cases)}, reverse=True)
    proto = suite.protocol
    rows: list[dict] = []
    per_row: dict[str, dict[str, dict]] = {}
    for n_input, inputs in enumerate(proto.inputs):
        marked = inputs if proto.multi_input else None
        lists = candidate_lists(prepared, index, retrievers, inputs)
        candidates = lists[retrievers.default]
        per_name: dict[str, Callable[[EvalCase], dict]] = {
            "popularity": lambda c: bl.popularity_metrics(c, scores, ks),
            "random": lambda c, got=candidates: bl.random_metrics(
                c, got[c.user_id], ks, seed=proto.seed
            ),
        }
        names = []
        for name in suite.baselines:
            if name == "popularity" and n_input:
                continue  # the same for every input
            if name != "retrieval":
                names.append((name, name))
                continue
            # The default retriever's order (what the LM re-ranks), then every retriever's own.
            names.append(("retrieval", retrievers.default))
            names += [(f"retrieval/{r}", r) for r in sorted(lists)]
        for size in sizes:
            cases = prepared.cases[:size]
            suffix = "" if size == len(prepared.cases) else f"[n={size}]"
            for label, source in names:
                if source in lists:
                    got = lists[source]
                    per_case = [bl.retrieval_metrics(c, got[c.user_id], ks) for c in cases]
                else:
                    got = candidates
                    per_case = [per_name[source](c) for c in cases]
                metrics = {key: mean([m[key] for m in per_case]) for key in per_case[0]}
                if source != "popularity":
                    metrics["candidate_recall"] = mean(
                        [candidate_recall(got[c.user_id], c.wanted) for c in cases]
                    )
                mark = "" if source == "popularity" else input_suffix(marked)
                row_id = f"baseline/{label}{mark}{suffix}"
                per_row[row_id] = {c.user_id: m for c, m in zip(cases, per_case, strict=True)}
                rows.append(
                    {
                        "id": row_id,
                        "name": f"{label}{mark}{suffix}",
                        "mode": "baseline",
                        "retriever": source if source in lists else retrievers.default,
                        **({"inputs": marked} if marked and source != "popularity" else {}),
                        "users_completed": len(cases),
                        "metrics": metrics,
                    }
                )
    return rows, per_row


def training_counts_of(prepared: Prepared) -> Counter[str]:
    """How often each item occurs in what the retrievers learn from (never a target)."""
    counts: Counter[str] = Counter()
    for seq in prepared.dataset.training_sequences().values():
        counts.update(seq)
    return counts


def _engine_for(settings: Settings, shared: Any, shared_settings: Settings) -> Any:
    """The caller's engine when the profile keeps its engine settings, else a new one (not
    started: whoever needs it first starts it, and stops it)."""
    if shared is not None and engine_settings(settings) == engine_settings(shared_settings):
        return shared
    return make_engine(settings)


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
    `settings`; it is shut down here only if this run started it (after that profile's cells).
    `tokenizer` is used only for profiles that keep the model of `settings`.
    """
    from genrec.recommender import Recommender

    opts, suite = prepared.options, prepared.suite
    settings = suite_settings(suite, settings)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    env = environment()  # the code that runs is the code at the start, not at the end
    t0 = time.perf_counter()
    cells_dir = opts.out / "cells"
    if opts.fresh and cells_dir.is_dir():
        for p in cells_dir.glob("*.jsonl"):
            p.unlink()
    index = index or open_index(prepared, settings, embedder)
    retrievers = prepare_retrievers(prepared, settings, index)
    baseline_rows, baseline_cases = compute_baselines(prepared, index, retrievers)
    fidelity: dict[str, dict] = {}
    fidelity_users = suite.fidelity.users if suite.fidelity is not None else 0

    def fidelity_cases(c: PreparedCell) -> list[EvalCase]:
        return c.cases[:fidelity_users]

    def fidelity_path(c: PreparedCell) -> Path:
        return opts.out / "fidelity" / f"{c.slug}.jsonl"

    def _wants_fidelity(c: PreparedCell) -> bool:
        """The cell's deletion test is asked for and not finished (a failed case is asked again)."""
        done = read_rows(fidelity_path(c))
        return bool(fidelity_users) and any(
            u.user_id not in done or "error" in done[u.user_id] for u in fidelity_cases(c)
        )

    if suite.fidelity is not None and suite.fidelity.retrieval and not opts.report_only:
        fidelity["retrieval"] = retrieval_fidelity(
            prepared, index, retrievers, opts.out / "fidelity" / "retrieval.jsonl", opts.progress
        )

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
                if any(u.user_id not in records[c.id] for u in c.cases) or _wants_fidelity(c):
                    pending.append(c)
            if not pending or opts.report_only:
                continue  # nothing to do (or not asked to): no engine, no Recommender
            s = cells[0].settings
            eng = _engine_for(s, engine, settings)
            if opts.cache_dir is not None:
                eng = CachingEngine(eng, opts.cache_dir, identity=engine_identity(s))
                caches.append(eng)
            # The caller's tokenizer belongs to its model; another model loads its own.
            same_model = all(
                getattr(s, f) == getattr(settings, f) for f in ("model", "model_cache")
            )
            tok = tokenizer if same_model else None
            # Whoever starts an engine stops it: the Recommender enters the engine's context,
            # which starts it if it is not running (a cache starts its inner engine on the first
            # miss instead) and stops it at the end if it did; a running engine stays up.
            async with Recommender(
                s, index=index, engine=eng, tokenizer=tok, retrievers=retrievers
            ) as rec:
                for c in pending:
                    path = cells_dir / f"{c.slug}.jsonl"
                    records[c.id] = await run_cell(rec, c, suite, path, concurrency, opts.progress)
                    if _wants_fidelity(c):
                        await cell_fidelity(
                            rec,
                            c,
                            prepared,
                            fidelity_cases(c),
                            fidelity_path(c),
                            concurrency,
                            opts.progress,
                            suite.fidelity.sentence_users if suite.fidelity else None,
                            suite.fidelity.k if suite.fidelity else None,
                        )
    finally:
        for cache in caches:
            cache.close()

    doc = results_document(
        prepared,
        records,
        baseline_rows,
        started_at,
        time.perf_counter() - t0,
        env,
        baseline_cases,
    )
    samples = {}
    for cell in prepared.cells:
        cell_records = [
            records[cell.id][c.user_id] for c in cell.cases if c.user_id in records[cell.id]
        ]
        samples[cell.id] = latency_samples(cell_records)
    for c in prepared.cells if fidelity_users else []:
        if fidelity_path(c).is_file():
            fidelity[c.id] = summarise_rows(read_rows(fidelity_path(c)), fidelity_cases(c))
    if fidelity:
        doc["fidelity"] = {"retriever": retrievers.default, **fidelity}
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
