"""Reports of an evaluation run: results.json (every number), report.md and (report_html.py) a
self-contained report.html, and the comparison with a previous results.json.

Everything here reads the results document the runner builds; nothing here runs an engine.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

STAGES = ("retrieve", "render", "llm", "ground", "total")
RATE_METRICS = (
    "candidate_recall",
    "validity_rate",
    "hallucination_rate",
    "duplicate_rate",
    "in_history_rate",
    "outside_candidates_rate",
    "empty_rate",
    "error_rate",
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


def fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _ms(v: float | None) -> str:
    return "–" if v is None else (f"{v:.0f}" if v >= 100 else f"{v:.1f}")


def ranking_keys(ks: Sequence[int]) -> list[str]:
    return [f"{m}@{k}" for m in ("recall", "ndcg", "mrr") for k in ks]


def all_rows(doc: Mapping) -> list[Mapping]:
    return list(doc.get("cells", [])) + list(doc.get("baselines", []))


# ---- comparison ---------------------------------------------------------------------------------


def compare(current: Mapping, previous: Mapping) -> dict:
    """Per cell and metric: previous, current and the difference. Cells are matched by id."""
    prev_rows = {r["id"]: r for r in all_rows(previous)}
    cur_rows = {r["id"]: r for r in all_rows(current)}
    cells = []
    for cid, row in cur_rows.items():
        old = prev_rows.get(cid)
        if old is None:
            continue
        diffs = {}
        for name, now in row.get("metrics", {}).items():
            before = old.get("metrics", {}).get(name)
            if isinstance(now, int | float) and isinstance(before, int | float):
                diffs[name] = {"previous": before, "current": now, "delta": now - before}
        cells.append({"id": cid, "metrics": diffs})
    protocol_changes = {
        key: {"previous": previous.get("protocol", {}).get(key), "current": value}
        for key, value in current.get("protocol", {}).items()
        if previous.get("protocol", {}).get(key) != value
    }
    return {
        "previous_commit": previous.get("environment", {}).get("git_commit"),
        "previous_started_at": previous.get("started_at"),
        "protocol_changes": protocol_changes,
        "cells": cells,
        "only_current": sorted(set(cur_rows) - set(prev_rows)),
        "only_previous": sorted(set(prev_rows) - set(cur_rows)),
    }


def _headline(ks: Sequence[int]) -> list[str]:
    k = 10 if 10 in ks else max(ks)
    return [f"recall@{k}", f"ndcg@{k}", f"mrr@{k}", "candidate_recall", "validity_rate"]


# ---- markdown -----------------------------------------------------------------------------------


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def pivot(doc: Mapping, metric: str) -> tuple[list[str], list[list[str]]]:
    """Templates x modes for one metric (a row per profile/template); the baselines, which use
    no LM, are rows with their value in a column of their own."""
    cells = doc.get("cells", [])
    modes = list(dict.fromkeys(c["mode"] for c in cells))
    rows_by: dict[tuple[str, str], dict[str, str]] = {}
    for c in cells:
        key = (c["profile"], c["template_spec"] or "default")
        val = fmt(c["metrics"].get(metric))
        if c.get("users_completed") != doc["protocol"].get("users_evaluated"):
            val += f" (n={c.get('users_completed')})"
        rows_by.setdefault(key, {})[c["mode"]] = val
    header = ["profile", "template", *modes, "no LM"]
    rows = [[p, t, *(v.get(m, "") for m in modes), ""] for (p, t), v in rows_by.items()]
    for b in doc.get("baselines", []):
        rows.append(["baseline", b["name"], *([""] * len(modes)), fmt(b["metrics"].get(metric))])
    return header, rows


def render_markdown(doc: Mapping) -> str:
    p = doc["protocol"]
    ks = p["ks"]
    out = [f"# genrec eval: {doc['suite']['name']}", ""]
    if doc["suite"].get("description"):
        out += [doc["suite"]["description"], ""]
    env = doc.get("environment", {})
    models = ", ".join(sorted({c.get("model") or "?" for c in doc.get("cells", [])})) or "–"
    out += [
        f"- dataset: **{p['dataset']}** ({p['source']}); {p['stats'].get('users')} users, "
        f"{p['stats'].get('items')} items, {p['stats'].get('interactions', '?')} interactions "
        f"after the {p['min_interactions']}-core filter",
        f"- split: chronological leave-one-out, **{p['split']}** target; full ranking over all "
        f"{p['stats'].get('items')} items with the history masked; a target outside the returned "
        "list is a miss; errors count as misses",
        f"- users evaluated: **{p['users_evaluated']}** of {p['users_available']} "
        f"(seed {p['seed']}); {p['candidates']} candidates; the LM sees the last "
        f"{p['history_len']} history items",
        f"- model: {models}; "
        f"genrec {env.get('packages', {}).get('genrec', '?')} at {env.get('git_commit') or '?'}; "
        f"{doc.get('wall_s', 0):.0f} s",
        "",
    ]
    for metric in _headline(ks)[:3]:
        header, rows = pivot(doc, metric)
        out += [f"## {metric} (templates × modes)", "", _md_table(header, rows), ""]

    rk = ranking_keys(ks)
    out += ["## Ranking", ""]
    out.append(
        _md_table(
            ["cell", "n", *rk],
            [
                [
                    r["id"],
                    str(r.get("users_completed", "")),
                    *(fmt(r["metrics"].get(m)) for m in rk),
                ]
                for r in all_rows(doc)
            ],
        )
    )
    out += ["", "## Outputs", ""]
    out.append(
        _md_table(
            ["cell", *RATE_METRICS],
            [
                [r["id"], *(fmt(r["metrics"].get(m)) for m in RATE_METRICS)]
                for r in doc.get("cells", [])
            ],
        )
    )
    out += ["", "## Cost (latency in ms, p50 / p95; tokens per request)", ""]
    rows = []
    for c in doc.get("cells", []):
        lat = c.get("latency_ms", {})
        rows.append(
            [
                c["id"],
                *(
                    f"{_ms(lat.get(s, {}).get('p50'))} / {_ms(lat.get(s, {}).get('p95'))}"
                    for s in STAGES
                ),
                fmt(c["metrics"].get("prompt_tokens"), 1),
                fmt(c["metrics"].get("completion_tokens"), 1),
                f"{c.get('latency_requests', 0)}",
                fmt(c.get("cache", {}).get("hit_rate"), 2),
            ]
        )
    out.append(
        _md_table(["cell", *STAGES, "prompt tok", "completion tok", "timed n", "cache hits"], rows)
    )
    out += [
        "",
        f"Requests ran {p.get('concurrency', '?')} at a time, so latency includes queueing in "
        "the engine. It counts only requests served by a running engine (not cache hits, not "
        "requests that waited for the engine to start); `timed n` says how many.",
    ]
    if doc.get("thresholds"):
        out += ["", "## Thresholds", ""]
        out.append(
            _md_table(
                ["metric", "cells", "bound", "value", "result"],
                [
                    [
                        t["metric"],
                        t["cell"],
                        t["bound"],
                        fmt(t["value"]),
                        "pass" if t["passed"] else "**FAIL**",
                    ]
                    for t in doc["thresholds"]
                ],
            )
        )
    if doc.get("comparison"):
        out += ["", *_md_comparison(doc["comparison"], ks)]
    errors = [
        (c["id"], c.get("error_types", {})) for c in doc.get("cells", []) if c.get("error_types")
    ]
    if errors:
        out += ["", "## Errors", ""]
        for cid, types in errors:
            out.append(f"- {cid}: " + ", ".join(f"{k} × {v}" for k, v in types.items()))
    return "\n".join(out) + "\n"


def _md_comparison(cmp: Mapping, ks: Sequence[int]) -> list[str]:
    keys = _headline(ks)
    out = [
        f"## Compared with {cmp.get('previous_commit') or 'the previous run'} "
        f"({cmp.get('previous_started_at')})",
        "",
    ]
    if cmp.get("protocol_changes"):
        out.append(
            "Protocol differs: "
            + "; ".join(
                f"{k}: {v['previous']} → {v['current']}" for k, v in cmp["protocol_changes"].items()
            )
        )
        out.append("")
    rows = []
    for c in cmp["cells"]:
        row = [c["id"]]
        for k in keys:
            d = c["metrics"].get(k)
            row.append("–" if d is None else f"{fmt(d['current'])} ({d['delta']:+.4f})")
        rows.append(row)
    out.append(_md_table(["cell", *(f"{k} (Δ)" for k in keys)], rows))
    if cmp.get("only_current"):
        out += ["", "New cells: " + ", ".join(cmp["only_current"])]
    if cmp.get("only_previous"):
        out += ["", "Cells no longer run: " + ", ".join(cmp["only_previous"])]
    return out


def write_reports(
    doc: Mapping, out: Path, samples: Mapping[str, Mapping[str, Sequence[float]]] | None = None
) -> dict[str, Path]:
    from genrec.evaluation.report_html import render_html

    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "results": out / "results.json",
        "markdown": out / "report.md",
        "html": out / "report.html",
    }
    paths["results"].write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
    paths["markdown"].write_text(render_markdown(doc), encoding="utf-8")
    paths["html"].write_text(render_html(doc, samples), encoding="utf-8")
    return paths
