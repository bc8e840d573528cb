"""From per-request records (one JSON line each, written by the runner) to the numbers of a cell.

Definitions (the report repeats them):
- ranking metrics: the returned items, history items masked and repeats dropped, ranked as
  returned; the target outside that list is a miss; a request that failed counts as a miss;
- candidate_recall: the target is among the retrieved candidates (the ceiling of any re-ranker);
- validity_rate / hallucination_rate / duplicate_rate: over the LM's raw outputs - grounded to an
  item / matching nothing / grounded to an item already returned;
- in_history_rate / outside_candidates_rate: over the returned items (before masking);
- empty_rate: successful requests that returned nothing; error_rate: requests that failed;
- latency: per stage, only over requests that reached a running engine (a cache hit would
  flatter it, waiting for the engine to start would not be serving time);
- tokens: mean prompt and completion tokens per successful request;
- position bias: where the top returned item sat in the candidate list (top_pick_first_rate: the
  share at the first position; top_pick_position_entropy: 1 = even over the N positions), beside
  where the target sat;
- vs_retrieval: per-user NDCG@10 of the returned list minus that of the candidates in the
  retriever's order, with a paired bootstrap 95 % interval.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from genrec.evaluation.metrics import (
    candidate_recall,
    mean,
    percentile,
    position_bias,
    ranking_metrics,
    ratio,
)
from genrec.evaluation.splits import EvalCase
from genrec.schema import STAGES


def masked_ranking(items: Sequence[str], history: set[str]) -> list[str]:
    """What the full-ranking protocol scores: history masked, each item once, order kept."""
    return [i for i in dict.fromkeys(items) if i not in history]


def cell_summary(
    records: Sequence[Mapping], cases: Mapping[str, EvalCase], ks: Sequence[int]
) -> dict:
    """Every number of one cell from its request records (ok ones and errors)."""
    sums: dict[str, float] = {}
    ok = [r for r in records if r.get("ok")]
    errors = [r for r in records if not r.get("ok")]
    for r in records:
        case = cases[r["user_id"]]
        ranked = masked_ranking([i[0] for i in r.get("items", [])], set(case.history))
        for key, v in ranking_metrics(ranked, case.wanted, ks).items():
            sums[key] = sums.get(key, 0.0) + v
    n = len(records)
    metrics: dict[str, float | None] = {k: v / n for k, v in sums.items()} if n else {}

    outputs = sum(r["n_outputs"] for r in ok)
    unmatched = sum(len(r["unmatched"]) for r in ok)
    returned = sum(len(r["items"]) for r in ok)
    in_history = sum(
        sum(1 for i in r["items"] if i[0] in set(cases[r["user_id"]].history)) for r in ok
    )
    metrics.update(
        candidate_recall=mean(
            [candidate_recall(r["candidates"], cases[r["user_id"]].wanted) for r in ok]
        ),
        validity_rate=ratio(outputs - unmatched, outputs),
        hallucination_rate=ratio(unmatched, outputs),
        duplicate_rate=ratio(sum(r["duplicates"] for r in ok), outputs),
        in_history_rate=ratio(in_history, returned),
        outside_candidates_rate=ratio(sum(1 for r in ok for i in r["items"] if not i[1]), returned),
        empty_rate=ratio(sum(1 for r in ok if not r["items"]), len(ok)),
        error_rate=ratio(len(errors), n),
        prompt_tokens=mean([r["usage"]["prompt_tokens"] for r in ok]),
        completion_tokens=mean([r["usage"]["completion_tokens"] for r in ok]),
    )
    vs_retrieval = against_candidate_order(ok, cases, ks)
    bias = top_pick_bias(ok, cases)
    metrics["top_pick_first_rate"] = bias["top_pick"]["first_rate"]
    metrics["top_pick_position_entropy"] = bias["top_pick"]["normalized_entropy"]
    timed = [r for r in ok if _timed(r)]
    latency = {}
    for stage in STAGES:
        xs = [r["timings"][f"{stage}_ms"] for r in timed]
        latency[stage] = {"p50": percentile(xs, 50), "p95": percentile(xs, 95), "mean": mean(xs)}
        metrics[f"latency_{stage}_p50"] = latency[stage]["p50"]
        metrics[f"latency_{stage}_p95"] = latency[stage]["p95"]
    hits = sum(r.get("cache", {}).get("hits", 0) for r in ok)
    misses = sum(r.get("cache", {}).get("misses", 0) for r in ok)
    return {
        "users_completed": n,
        "requests_ok": len(ok),
        "requests_failed": len(errors),
        "error_types": dict(Counter(r["error"]["type"] for r in errors)),
        "metrics": metrics,
        "position_bias": bias,
        "vs_retrieval": vs_retrieval,
        "latency_ms": latency,
        "latency_requests": len(timed),
        "cache": {"hits": hits, "misses": misses, "hit_rate": ratio(hits, hits + misses)},
        "templates_used": sorted({r["template"] for r in ok if r.get("template")}),
        "model": next((r["model"] for r in ok if r.get("model")), None),
    }


def against_candidate_order(
    ok: Sequence[Mapping], cases: Mapping[str, EvalCase], ks: Sequence[int]
) -> dict:
    """NDCG@10 (or the largest K) of the returned list minus that of the candidates in the
    retriever's order, per case, with a paired bootstrap 95 % interval over users: what the LM
    added to the order it was handed (successful requests only: a failed one has no
    candidates)."""
    from genrec.evaluation.paired import paired_bootstrap

    k = 10 if 10 in ks else max(ks)
    key = f"ndcg@{k}"
    mine, theirs, people = [], [], []
    for r in ok:
        case = cases[r["user_id"]]
        history = set(case.history)
        items = masked_ranking([i[0] for i in r["items"]], history)
        mine.append(ranking_metrics(items, case.wanted, [k])[key])
        order = masked_ranking(r["candidates"], history)
        theirs.append(ranking_metrics(order, case.wanted, [k])[key])
        people.append(case.person)
    return {"metric": key, **paired_bootstrap(mine, theirs, groups=people)}


def top_pick_bias(ok: Sequence[Mapping], cases: Mapping[str, EvalCase]) -> dict:
    """Position bias: where the returned top item sat in the candidate list, beside where the
    target sat (a top pick that follows the target's positions is no bias)."""
    n = max((len(r["candidates"]) for r in ok), default=0)
    tops = [_position(r["candidates"], r["items"][0][0]) for r in ok if r["items"]]
    targets = [_position(r["candidates"], cases[r["user_id"]].target) for r in ok]
    return {"top_pick": position_bias(tops, n), "target": position_bias(targets, n)}


def _position(candidates: Sequence[str], item: str) -> int | None:
    try:
        return list(candidates).index(item)
    except ValueError:
        return None


def latency_samples(records: Sequence[Mapping]) -> dict[str, list[float]]:
    """Per-stage latencies of the timed requests, for the distribution plots."""
    timed = [r for r in records if r.get("ok") and _timed(r)]
    return {s: [r["timings"][f"{s}_ms"] for r in timed] for s in STAGES}


def _timed(record: Mapping) -> bool:
    cache = record.get("cache", {})
    return not cache.get("hits") and not cache.get("engine_start")
