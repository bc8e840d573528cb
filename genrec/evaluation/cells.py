"""One cell of the matrix: its requests, their records (one JSON line each), resuming.

Each finished request is appended to ``OUT/cells/<cell>.jsonl`` at once (the first line is the
cell's fingerprint), so an interrupted run resumes where it stopped. An error is recorded against
its request and counted, never fatal - unless so many fail in a row that the engine is plainly
down, which stops the run with everything finished so far kept.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from genrec.errors import ConfigError, EngineError, GenrecError
from genrec.evaluation.cache import request_stats
from genrec.evaluation.prepare import PreparedCell
from genrec.evaluation.splits import EvalCase
from genrec.evaluation.suite import Suite

MAX_CONSECUTIVE_FAILURES = 25  # the engine is down, not one request bad: stop, keep what is done


def request_for(case: EvalCase, cell: PreparedCell, suite: Suite):
    """The request of one case: the user's whole history (the most recent MAX_HISTORY items as
    the history, older ones excluded, so all of it stays masked); the prompt shows the last
    `protocol.history_len` of them (the cell's `prompt_history` setting). A stated-need cell
    carries the case's query as the user's words (`both`), or the query alone (`query`); so
    does a query set's (`both`: its query and whatever history it has)."""
    from genrec.schema import MAX_HISTORY, RecommendRequest

    inputs = cell.spec.inputs or suite.protocol.inputs[0]  # unmarked: the one input there is
    if inputs == "query":  # the stated need alone; what the user has seen stays excluded
        history, exclude = [], list(case.history)
    else:
        history, exclude = list(case.history[-MAX_HISTORY:]), list(case.history[:-MAX_HISTORY])
    return RecommendRequest(
        query=case.query if inputs in ("query", "both") else None,
        history=history,
        exclude=exclude,
        k=suite.candidates,
        candidates=suite.candidates,
        mode=cell.spec.mode,
        template=cell.spec.template,
        # no user_id: it would add the user's stored events (genrec.events) to a history the
        # protocol fixes, leaking whatever a store under the same home holds into the results
    )


def _ok_record(case: EvalCase, rec: Any, wall_ms: float, cache: dict) -> dict:
    return {
        "user_id": case.user_id,
        "target": case.target,
        "ok": True,
        "items": [[i.id, i.from_candidates, i.grounded_by, i.score] for i in rec.items],
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
