"""What report.md and report.html both show: number formatting and the rows of their tables.

The rows are plain text; each renderer escapes and marks them up its own way (markdown bold, HTML
spans), so the two reports cannot drift apart in what they say. Everything here reads the results
document the runner builds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from genrec.schema import STAGES

RATE_METRICS = (
    "candidate_recall",
    "validity_rate",
    "hallucination_rate",
    "duplicate_rate",
    "in_history_rate",
    "outside_candidates_rate",
    "empty_rate",
    "error_rate",
    # Spearman's rho of the returned scores with popularity and title length (score_bias.py)
    "score_popularity_spearman",
    "score_title_length_spearman",
    "top_pick_first_rate",
    "top_pick_position_entropy",
)
# Rates where lower is better, for the sign of a comparison.
LOWER_IS_BETTER = {
    "hallucination_rate",
    "duplicate_rate",
    "in_history_rate",
    "empty_rate",
    "error_rate",
    "prompt_tokens",
    "completion_tokens",
} | {f"latency_{s}_p{q}" for s in STAGES for q in (50, 95)}
# The cost table's columns after the per-stage latencies.
COST_COLUMNS = ("prompt tok", "completion tok", "timed n", "cache hits")
THRESHOLD_HEADER = ("metric", "cells", "bound", "value", "result")


def fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def fmt_ms(v: float | None) -> str:
    return "–" if v is None else (f"{v:.0f}" if v >= 100 else f"{v:.1f}")


def ranking_keys(ks: Sequence[int]) -> list[str]:
    return [f"{m}@{k}" for m in ("recall", "precision", "f1", "ndcg", "mrr") for k in ks]


def headline_keys(ks: Sequence[int]) -> list[str]:
    """The metrics a summary leads with: ranking at K=10 (or the largest K), then the ceiling
    and the validity of the outputs."""
    k = 10 if 10 in ks else max(ks)
    return [f"recall@{k}", f"ndcg@{k}", f"mrr@{k}", "candidate_recall", "validity_rate"]


def all_rows(doc: Mapping) -> list[Mapping]:
    return list(doc.get("cells", [])) + list(doc.get("baselines", []))


def is_baseline(row_id: str) -> bool:
    return row_id.startswith("baseline/")


def protocol_lines(doc: Mapping, strong: Callable[[str], str]) -> list[str]:
    """The protocol in four sentences; `strong` marks the key values (or leaves them plain)."""
    p = doc["protocol"]
    env = doc.get("environment", {})
    models = ", ".join(sorted({c.get("model") or "?" for c in doc.get("cells", [])})) or "–"
    filtered = (
        "training interactions (no k-core: the whole catalog)"
        if p["split"] == "stated-need"
        else f"interactions after the {p['min_interactions']}-core filter"
    )
    st = p["stats"]
    data = f"{st.get('users')} users, {st.get('items')} items, "
    data += f"{st.get('interactions', '?')} {filtered}"
    if p.get("format") == "queries":
        data = f"{st.get('cases')} queries ({st.get('relevant_per_query')} relevant items each "
        data += f"on average), {st.get('items')} items"
    return [
        f"dataset: {strong(str(p['dataset']))} ({p['source']}); {data}",
        split_line(p, strong),
        f"users evaluated: {strong(str(p['users_evaluated']))} of {p['users_available']} "
        f"(seed {p['seed']}); {p['candidates']} candidates; the LM sees the last "
        f"{p['history_len']} history items",
        f"model: {models}; "
        f"genrec {env.get('packages', {}).get('genrec', '?')} at {env.get('git_commit') or '?'}; "
        f"{doc.get('wall_s', 0):.0f} s",
    ]


def split_line(p: Mapping, strong: Callable[[str], str]) -> str:
    ranking = (
        f"full ranking over all {p['stats'].get('items')} items with the history masked; a "
        "target outside the returned list is a miss; errors count as misses"
    )
    if p.get("format") == "queries":
        return (
            f"query set: the {strong(str(p['split']))} queries, each its text (and any history) "
            "as the request, scored against all its relevant items (Recall@K = found / min(K, "
            f"relevant), NDCG@K with binary gains over the same ideal); {ranking}"
        )
    if p["split"] != "stated-need":
        return f"split: chronological leave-one-out, {strong(str(p['split']))} target; {ranking}"
    st = p["stats"]
    skipped = "; ".join(f"{n} skipped ({why})" for why, n in st.get("skipped", {}).items())
    return (
        f"split: {strong('stated-need')} ({st.get('tags')}), {strong(str(st.get('part')))} part: "
        f"{st.get('cases')} cases of {st.get('users')} users (at most "
        f"{st.get('max_cases_per_user')} per user; {st.get('capped_away')} capped away"
        f"{'; ' + skipped if skipped else ''}); query = the user's tags for the target, "
        "history = what they rated before; retrievers learned from the "
        f"{st.get('training_users')} users who never tagged; inputs "
        f"{', '.join(p.get('inputs', []))}; {ranking}"
    )


def pivot(doc: Mapping, metric: str) -> tuple[list[str], list[list[str]]]:
    """Templates x modes for one metric (a row per profile/template); the baselines, which use
    no LM, are rows with their value in a column of their own."""
    cells = doc.get("cells", [])
    modes = list(dict.fromkeys(c["mode"] for c in cells))
    rows_by: dict[tuple[str, str], dict[str, str]] = {}
    for c in cells:
        key = (
            c["profile"] + (f"@{c['inputs']}" if c.get("inputs") else ""),
            c["template_spec"] or "default",
        )
        val = fmt(c["metrics"].get(metric))
        if c.get("users_completed") != doc["protocol"].get("users_evaluated"):
            val += f" (n={c.get('users_completed')})"
        rows_by.setdefault(key, {})[c["mode"]] = val
    header = ["profile", "template", *modes, "no LM"]
    rows = [[p, t, *(v.get(m, "") for m in modes), ""] for (p, t), v in rows_by.items()]
    for b in doc.get("baselines", []):
        rows.append(["baseline", b["name"], *([""] * len(modes)), fmt(b["metrics"].get(metric))])
    return header, rows


def ranking_table(doc: Mapping) -> tuple[list[str], list[list[str]]]:
    """Every ranking metric at every K, for the cells and the baselines."""
    rk = ranking_keys(doc["protocol"]["ks"])
    rows = [
        [r["id"], str(r.get("users_completed", "")), *(fmt(r["metrics"].get(m)) for m in rk)]
        for r in all_rows(doc)
    ]
    return ["cell", "n", *rk], rows


def output_table(doc: Mapping) -> tuple[list[str], list[list[str]]]:
    """What the LM's outputs were like, per cell (baselines have no outputs)."""
    rows = [
        [c["id"], *(fmt(c["metrics"].get(m)) for m in RATE_METRICS)] for c in doc.get("cells", [])
    ]
    return ["cell", *RATE_METRICS], rows


def cost_rows(doc: Mapping) -> list[list[str]]:
    """Per cell: p50 / p95 latency of each stage, tokens per request, timed requests, cache
    hits. The header is the renderer's (its wording of the latency columns differs)."""
    rows = []
    for c in doc.get("cells", []):
        lat = c.get("latency_ms", {})
        rows.append(
            [
                c["id"],
                *(
                    f"{fmt_ms(lat.get(s, {}).get('p50'))} / {fmt_ms(lat.get(s, {}).get('p95'))}"
                    for s in STAGES
                ),
                fmt(c["metrics"].get("prompt_tokens"), 1),
                fmt(c["metrics"].get("completion_tokens"), 1),
                str(c.get("latency_requests", 0)),
                fmt(c.get("cache", {}).get("hit_rate"), 2),
            ]
        )
    return rows


COST_GAIN_HEADER = (
    "cell",
    "NDCG@10",
    "gain over retrieval order [95 % CI]",
    "prompt tok",
    "p50 total ms",
    "timed n",
)


def ci(d: Mapping | None, key: str = "diff") -> str:
    """`+0.0123 [-0.0010, +0.0250]`, or – without data."""
    if not d or d.get(key) is None:
        return "–"
    return f"{d[key]:+.4f} [{d['ci95_low']:+.4f}, {d['ci95_high']:+.4f}]"


def cost_gain_rows(doc: Mapping) -> list[list[str]]:
    """Per LM cell: what it buys (NDCG gain over the order of the candidates it was handed, the
    same run's retrieval order) beside what it costs (prompt tokens, p50 total latency)."""
    rows = []
    for c in doc.get("cells", []):
        vs = c.get("vs_retrieval") or {}
        total = c.get("latency_ms", {}).get("total", {})
        rows.append(
            [
                c["id"],
                fmt(c["metrics"].get(vs.get("metric", "ndcg@10"))),
                ci(vs),
                fmt(c["metrics"].get("prompt_tokens"), 1),
                fmt_ms(total.get("p50")),
                str(c.get("latency_requests", 0)),
            ]
        )
    return rows


def cold_header(doc: Mapping) -> list[str]:
    k = 10 if 10 in doc["protocol"]["ks"] else max(doc["protocol"]["ks"])
    return [
        "cell",
        "n",
        f"NDCG@{k} [95 % CI]",
        f"Recall@{k} [95 % CI]",
        "gain over retrieval order",
    ]


def cold_rows(doc: Mapping) -> list[list[str]]:
    """The cold-item view: each row on the cases whose target was rarely seen in training."""
    view = doc.get("cold_items") or {}
    k = 10 if 10 in doc["protocol"]["ks"] else max(doc["protocol"]["ks"])
    rows = []
    for rid, r in view.get("rows", {}).items():
        rows.append(
            [
                rid,
                str(r["users"]),
                ci(r.get(f"ndcg@{k}"), "mean").replace("+", ""),
                ci(r.get(f"recall@{k}"), "mean").replace("+", ""),
                ci(r.get("vs_retrieval")),
            ]
        )
    return rows


def cold_caption(doc: Mapping) -> str:
    view = doc.get("cold_items") or {}
    return (
        f"Cases whose target had at most {view.get('max_training_interactions')} interactions "
        f"in the retrievers' training data: {view.get('users')} of {view.get('of')}."
    )


INPUTS_HEADER = ("row", "a", "b", "metric", "a − b [95 % CI]", "cases (users)")


def inputs_rows(doc: Mapping) -> list[list[str]]:
    """The stated-need comparisons between inputs, paired by case; the interval resamples the
    users behind the cases (older results.json files did not say how many: the cases)."""
    return [
        [
            p["row"],
            p["a"],
            p["b"],
            p["metric"],
            ci(p),
            f"{p['users']} ({p.get('resampled', p['users'])})",
        ]
        for p in doc.get("inputs_paired", [])
    ]


def threshold_rows(doc: Mapping) -> list[tuple[list[str], bool]]:
    """Per threshold: its text cells (all but the result) and whether it passed."""
    return [
        ([t["metric"], t["cell"], t["bound"], fmt(t["value"])], t["passed"])
        for t in doc.get("thresholds", [])
    ]


def protocol_changes(cmp: Mapping) -> str:
    """What differs between the compared runs' protocols, in one line ("" when nothing)."""
    return "; ".join(
        f"{k}: {v['previous']} → {v['current']}" for k, v in cmp.get("protocol_changes", {}).items()
    )


def comparison_rows(
    cmp: Mapping, keys: Sequence[str], show: Callable[[str, Mapping], str]
) -> list[tuple[str, list[str]]]:
    """Per compared cell: its id and, per key, `show(key, difference)` ("–" where either run
    lacks the metric)."""
    rows = []
    for c in cmp["cells"]:
        shown = []
        for k in keys:
            d = c["metrics"].get(k)
            shown.append("–" if d is None else show(k, d))
        rows.append((c["id"], shown))
    return rows
