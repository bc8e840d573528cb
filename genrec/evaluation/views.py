"""Views of a run beyond each cell's means, from the same per-case numbers:

- the cold-item view: every cell and baseline on the cases whose target had at most
  ``protocol.cold_items`` interactions in what the retrievers learned from, each metric's mean
  with a bootstrap 95 % interval, and each LM cell's NDCG gain over its candidates' order there;
- the paired comparisons between inputs (stated-need protocol): the same cell or retriever order
  over history, query and both, per case, with paired bootstrap 95 % intervals.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence

from genrec.evaluation.aggregate import against_candidate_order, masked_ranking
from genrec.evaluation.metrics import ranking_metrics
from genrec.evaluation.paired import paired_bootstrap
from genrec.evaluation.splits import EvalCase

PAIRS = (("both", "history"), ("both", "query"), ("query", "history"))


def headline_k(ks: Sequence[int]) -> int:
    return 10 if 10 in ks else max(ks)


def case_metrics(
    records: Mapping[str, Mapping], cases: Sequence[EvalCase], ks: Sequence[int]
) -> dict[str, dict[str, float]]:
    """Per case (of those with a record): its ranking metrics; a failed request is a miss."""
    out = {}
    for case in cases:
        r = records.get(case.user_id)
        if r is None:
            continue
        items = masked_ranking([i[0] for i in r.get("items", [])], set(case.history))
        out[case.user_id] = ranking_metrics(items, case.wanted, ks)
    return out


def _mean_ci(values: Sequence[float], groups: Sequence[str]) -> dict:
    got = paired_bootstrap(values, [0.0] * len(values), groups=groups)
    return {"mean": got["diff"], "ci95_low": got["ci95_low"], "ci95_high": got["ci95_high"]}


def cold_view(
    per_row: Mapping[str, Mapping[str, Mapping[str, float]]],
    records: Mapping[str, Mapping[str, Mapping]],
    cases: Sequence[EvalCase],
    counts: Counter[str],
    max_count: int,
    ks: Sequence[int],
    inputs_of: Mapping[str, tuple[str, str]] | None = None,
) -> dict:
    """The cold-item view of every row (cells and baselines) of one run; with ``inputs_of`` (a
    run over several inputs) also the inputs compared on the cold cases alone."""
    k = headline_k(ks)
    keys = [f"ndcg@{k}", f"recall@{k}", f"mrr@{k}"]
    by_key = {c.user_id: c for c in cases}
    cold = {c.user_id for c in cases if counts[c.target] <= max_count}
    rows = {}
    for row_id, values in per_row.items():
        mine = [u for u in values if u in cold]
        people = [by_key[u].person for u in mine]
        row: dict = {"users": len(mine)}
        for key in keys:
            row[key] = _mean_ci([values[u][key] for u in mine], people) if mine else None
        if row_id in records:
            ok = [r for u, r in records[row_id].items() if u in cold and r.get("ok")]
            row["vs_retrieval"] = against_candidate_order(ok, by_key, ks)
        rows[row_id] = row
    view = {
        "max_training_interactions": max_count,
        "users": len(cold),
        "of": len(cases),
        "rows": rows,
    }
    if inputs_of and cold:
        person_of = {u: c.person for u, c in by_key.items()}
        view["inputs_paired"] = inputs_paired(per_row, inputs_of, ks, person_of, users=cold)
    return view


def inputs_paired(
    per_row: Mapping[str, Mapping[str, Mapping[str, float]]],
    inputs_of: Mapping[str, tuple[str, str]],
    ks: Sequence[int],
    people: Mapping[str, str],
    users: Collection[str] | None = None,
) -> list[dict]:
    """Per cell or retriever order run over several inputs: both - history, both - query and
    query - history of NDCG@k, paired by case (of ``users`` only, when given), the bootstrap
    resampling the people behind the cases (``people``: case key -> user). `inputs_of`: row id
    -> (base id, input)."""
    key = f"ndcg@{headline_k(ks)}"
    grouped: dict[str, dict[str, str]] = {}
    for row_id, (base, inputs) in inputs_of.items():
        grouped.setdefault(base, {})[inputs] = row_id
    out = []
    for base, ids in grouped.items():
        for a, b in PAIRS:
            if a not in ids or b not in ids:
                continue
            va, vb = per_row[ids[a]], per_row[ids[b]]
            common = [u for u in va if u in vb and (users is None or u in users)]
            got = paired_bootstrap(
                [va[u][key] for u in common],
                [vb[u][key] for u in common],
                groups=[people[u] for u in common],
            )
            out.append({"row": base, "a": ids[a], "b": ids[b], "metric": key, **got})
    return out
