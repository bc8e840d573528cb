"""What explanations cost (genrec.explain), as JSON on stdout:

- retrieve p50 with and without evidence: the suite's default retriever on real users'
  histories, each request timed both ways in the same run (alternating), so the ratio holds on
  a noisy machine. The evidence is what a request makes: the parts of the k items it serves
  (here the retriever's top k), then their Evidence objects;
- ``explain: true``: the LM's sentences' extra tokens and ms per request (the engine runs).

    python -m genrec.bench.explain eval/movielens-explain.yaml --users 300 --lm 4

It reuses the suite's collection and trained bundle under GENREC_HOME (``genrec eval run`` of
the suite makes them), so it trains nothing when they are there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from genrec.evaluation.cells import request_for
from genrec.evaluation.retrievers import prepare_retrievers
from genrec.evaluation.runner import RunOptions, open_index, prepare
from genrec.evaluation.suite import load_suite
from genrec.flow import candidates as stages
from genrec.settings import Settings
from genrec.stats import rounded_percentile


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def retrieval_cost(rec: Any, requests: list[Any]) -> dict[str, Any]:
    plain, explained, evidence = [], [], []
    for n, request in enumerate(requests):
        plan = rec.plan(request)
        for with_evidence in (n % 2 == 0, n % 2 == 1):  # alternate which goes first
            t0 = time.perf_counter()
            found = stages.find(rec.index, rec.retrievers, plan)  # the request's own calls
            if with_evidence:
                t1 = time.perf_counter()
                served = {c.item.id for c in found.scored[: plan.k]}
                made = stages.evidence(rec.settings, rec.index, plan, found, served)
                [made[i] for i in served]  # what attach reads
                evidence.append(_ms(t1))
                explained.append(_ms(t0))
            else:
                plain.append(_ms(t0))
    p50 = rounded_percentile(plain, 50)
    p50_explained = rounded_percentile(explained, 50)
    return {
        "requests": len(requests),
        "retrieve_p50_ms": p50,
        "retrieve_p95_ms": rounded_percentile(plain, 95),
        "retrieve_with_evidence_p50_ms": p50_explained,
        "retrieve_with_evidence_p95_ms": rounded_percentile(explained, 95),
        "evidence_p50_ms": rounded_percentile(evidence, 50),
        "evidence_p95_ms": rounded_percentile(evidence, 95),
        "added_share_p50": round(p50_explained / p50 - 1.0, 4) if p50 else None,
    }


async def lm_cost(rec: Any, requests: list[Any]) -> dict[str, Any]:
    rows = []
    for request in requests:
        plain = await rec.recommend(request)
        worded = await rec.recommend(request.model_copy(update={"explain": True}))
        rows.append(
            {
                "llm_ms": plain.timings.llm_ms,
                "llm_ms_explain": worded.timings.llm_ms,
                "prompt_tokens": plain.usage.prompt_tokens,
                "prompt_tokens_explain": worded.usage.prompt_tokens,
                "completion_tokens": plain.usage.completion_tokens,
                "completion_tokens_explain": worded.usage.completion_tokens,
                "sentences": sum(1 for it in worded.items if it.explanation),
                "items": len(worded.items),
            }
        )
    keys = rows[0].keys() if rows else []
    return {
        "requests": len(rows),
        **{f"{k}_p50": rounded_percentile([r[k] for r in rows], 50) for k in keys},
    }


async def main(argv: list[str] | None = None) -> dict[str, Any]:
    from genrec.recommender import Recommender

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("suite", type=Path)
    ap.add_argument("--users", type=int, default=300, help="requests timed without the LM")
    ap.add_argument("--lm", type=int, default=0, help="requests with the LM (explain off/on)")
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args(argv)
    settings = Settings()
    suite = load_suite(args.suite)
    prepared = prepare(
        suite, settings, RunOptions(out=Path("/tmp/genrec-bench-explain"), progress=False)
    )
    index = open_index(prepared, settings)
    retrievers = prepare_retrievers(prepared, settings, index)
    cell = prepared.cells[0]
    requests = [
        request_for(c, cell, suite).model_copy(update={"k": args.k})
        for c in prepared.cases[: args.users]
    ]
    doc: dict[str, Any] = {"suite": suite.name, "retriever": retrievers.default}
    rec = Recommender(cell.settings, index=index, retrievers=retrievers)
    rec.retrieve_scored(rec.plan(requests[0]))  # warm: the first query loads what it needs
    doc["retrieval"] = retrieval_cost(rec, requests)
    if args.lm:
        async with Recommender(cell.settings, index=index, retrievers=retrievers) as live:
            doc["lm"] = await lm_cost(live, requests[: args.lm])
    return doc


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1:])), indent=2))
