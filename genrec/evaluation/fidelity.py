"""Explanation fidelity: does the evidence an item cites actually hold it up?

The deletion test: for each recommended item that cites history evidence (genrec.explain), the
cited history items are taken out of the history (and excluded, so they cannot come back as
picks) and the same request is made again; the citation was faithful when the item's rank drops
or it leaves the list. Fidelity is the share of faithful items. Beside it, how many items carry
evidence at all (anything but ``fallback``), and, for LM sentences (``explain: true``), how many
name a title outside the item's evidence (target 0).

Two levels: ``retrieval`` (the suite's default retriever, no LM: cheap, every user) and each LM
cell (the full Recommender: one request per cited item, so on a prefix of the users).
Each case's result is appended to a JSONL file as it finishes, so an interrupted run resumes.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from genrec.errors import GenrecError
from genrec.evaluation.cells import request_for
from genrec.evaluation.metrics import mean
from genrec.evaluation.prepare import Prepared, PreparedCell
from genrec.evaluation.retrievers import query_for
from genrec.evaluation.splits import EvalCase
from genrec.explain import attach, cited_history, explain_candidates
from genrec.explain.sentence import names_outside
from genrec.retrieval import RetrievalQuery
from genrec.retrieval.popular import PopularRetriever
from genrec.schema import RecommendedItem


def _case_result(before: Sequence[RecommendedItem], after: dict[str, list[str]]) -> dict[str, Any]:
    """``after``: for each tested item, the list recommended without its cited history."""
    tested = faithful = 0
    for it in before:
        if it.id not in after:
            continue
        tested += 1
        again = after[it.id]
        faithful += it.id not in again or again.index(it.id) + 1 > it.rank
    kinds = [e.kind for it in before for e in it.because]
    return {
        "items": len(before),
        "with_evidence": sum(1 for it in before if any(e.kind != "fallback" for e in it.because)),
        "with_history": sum(1 for it in before if cited_history(it.because)),
        "tested": tested,
        "faithful": faithful,
        "kinds": {k: kinds.count(k) for k in sorted(set(kinds))},
    }


def summarise(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    items = sum(r["items"] for r in rows)
    tested = sum(r["tested"] for r in rows)
    sentences = sum(r.get("sentences", 0) for r in rows)
    kinds: dict[str, int] = {}
    for r in rows:
        for k, n in r["kinds"].items():
            kinds[k] = kinds.get(k, 0) + n
    out = {
        "users": len(rows),
        "items": items,
        "evidence_rate": sum(r["with_evidence"] for r in rows) / items if items else None,
        "history_evidence_rate": sum(r["with_history"] for r in rows) / items if items else None,
        "tested": tested,
        "fidelity": sum(r["faithful"] for r in rows) / tested if tested else None,
        "evidence_kinds": kinds,
    }
    if sentences:
        out["sentences"] = sentences
        out["sentence_outside_rate"] = sum(r.get("outside", 0) for r in rows) / sentences
    if any("requests" in r for r in rows):
        out["requests"] = sum(r.get("requests", 0) for r in rows)
    if any("ms" in r for r in rows):
        out["retrieve_ms_mean"] = mean([r["ms"] for r in rows if "ms" in r])
    return out


def summarise_rows(done: dict[str, dict], cases: Sequence[EvalCase]) -> dict[str, Any]:
    """The summary over ``cases`` of a cell's rows (errors counted, not averaged)."""
    rows = [done[c.user_id] for c in cases if c.user_id in done]
    out = summarise([r for r in rows if "error" not in r])
    out["errors"] = sum(1 for r in rows if "error" in r)
    return out


def read_rows(path: Path) -> dict[str, dict]:
    done: dict[str, dict] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut short by an interruption
            done[row["user_id"]] = row
    return done


def _without(query: RetrievalQuery, cited: Sequence[str]) -> RetrievalQuery:
    gone = set(cited)
    return RetrievalQuery(
        text=query.text,
        history=tuple(h for h in query.history if h.id not in gone),
        k=query.k,
        where=query.where,
        exclude=query.exclude | gone,
    )


def retrieval_fidelity(
    prepared: Prepared, index: Any, retrievers: Any, path: Path, progress: bool = True
) -> dict[str, Any]:
    """The deletion test on the default retriever's own lists, every user of the sample."""
    from tqdm import tqdm

    retriever = retrievers.get(None)
    popular = PopularRetriever(index)
    items = {it.id: it for it in index.get(list(prepared.dataset.items))}
    k = prepared.suite.candidates
    done = read_rows(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        for case in tqdm(prepared.cases, desc="fidelity/retrieval", disable=not progress):
            if case.user_id in done:
                continue
            q = query_for(case, items, k)
            got = retriever.retrieve(q)
            evidence = explain_candidates(retriever, index, q, got)
            before = attach(
                [_item(c.item, r + 1) for r, c in enumerate(got)],
                evidence,
                [c.item.id for c in got],
                lm=False,
            )
            after: dict[str, list[str]] = {}
            for it in before:
                if cited := cited_history(it.because):
                    q2 = _without(q, cited)
                    by = retriever if q2.history or q2.text else popular
                    after[it.id] = [c.item.id for c in by.retrieve(q2)]
            row = {"user_id": case.user_id, **_case_result(before, after)}
            f.write(json.dumps(row) + "\n")
            f.flush()
            done[case.user_id] = row
    return summarise_rows(done, prepared.cases)


def _item(item: Any, rank: int) -> RecommendedItem:
    return RecommendedItem(
        id=item.id, title=item.title, score=0.0, rank=rank, grounded_by="score", confidence=1.0
    )


async def cell_fidelity(
    rec: Any,
    cell: PreparedCell,
    prepared: Prepared,
    cases: Sequence[EvalCase],
    path: Path,
    concurrency: int,
    progress: bool = True,
    sentence_users: int | None = None,
    k: int | None = None,
) -> dict[str, Any]:
    """The deletion test through the Recommender for one LM cell, on lists of ``k`` (None: the
    cell's own); the first request of each of the first ``sentence_users`` cases (None: every
    case) asks for the LM's sentences too (``explain: true``) and checks what they name. Items
    citing the same history items share one request without them (the same request)."""
    from tqdm import tqdm

    suite = prepared.suite
    done = read_rows(path)
    # a case that failed (an engine that timed out, say) is asked again on the next run
    todo = [c for c in cases if c.user_id not in done or "error" in done[c.user_id]]
    gate = asyncio.Semaphore(concurrency)
    # Whole cases at a time, so rows land as they finish (a gate shared by every case's first
    # request would finish no case until nearly every first request had run).
    cases_gate = asyncio.Semaphore(concurrency)
    path.parent.mkdir(parents=True, exist_ok=True)

    async def ask(request: Any) -> Any:
        async with gate:
            return await rec.recommend(request)

    with_sentences = {c.user_id for c in cases[:sentence_users]}

    async def one(case: EvalCase) -> dict[str, Any]:
        async with cases_gate:
            return await _one(case)

    async def _one(case: EvalCase) -> dict[str, Any]:
        explain = case.user_id in with_sentences
        base = request_for(case, cell, suite).model_copy(update={"explain": explain})
        if k is not None:
            base = base.model_copy(update={"k": k})
        try:
            first = await ask(base)
        except GenrecError as exc:
            return {"user_id": case.user_id, "error": str(exc)}
        tested = {it.id: cited_history(it.because) for it in first.items}
        tested = {i: c for i, c in tested.items() if c}

        async def again(cited: list[str]) -> list[str]:
            history = [h for h in base.history if h not in cited]
            request = base.model_copy(
                update={"history": history, "exclude": [*base.exclude, *cited], "explain": False}
            )
            try:
                return [it.id for it in (await ask(request)).items]
            except GenrecError:
                return []  # nothing left to recommend from: the item left the list

        unique = list({tuple(sorted(c)): c for c in tested.values()}.items())
        lists = await asyncio.gather(*(again(c) for _, c in unique))
        by_cited = dict(zip((key for key, _ in unique), lists, strict=True))
        after = {i: by_cited[tuple(sorted(c))] for i, c in tested.items()}
        row = {"user_id": case.user_id, **_case_result(first.items, after)}
        row["requests"] = 1 + len(unique)
        titles = [*case.history, *first.candidates]
        names = {it.id: it.title for it in rec.index.get(titles)}
        sentences = [it for it in first.items if it.explanation]
        row["sentences"] = len(sentences)
        named = [names_outside(it.explanation or "", it, list(names.values())) for it in sentences]
        row["outside"] = sum(1 for n in named if n)
        row["outside_titles"] = sorted({t for n in named for t in n})
        return row

    with (
        path.open("a", encoding="utf-8") as f,
        tqdm(
            total=len(cases),
            initial=len(cases) - len(todo),
            desc=f"fidelity/{cell.id}",
            disable=not progress,
            file=sys.stderr,
        ) as bar,
    ):
        for fut in asyncio.as_completed([one(c) for c in todo]):
            row = await fut
            f.write(json.dumps(row) + "\n")
            f.flush()
            bar.update(1)
            done[row["user_id"]] = row
    return summarise_rows(done, cases)
