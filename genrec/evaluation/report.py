"""Reports of an evaluation run: results.json (every number), report.md, report.html (from
report_html.py) and the comparison with a previous results.json.

Everything here reads the results document the runner builds; nothing here runs an engine. What
both reports show (formatting, table rows) lives in report_tables.py, which both import.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from genrec.evaluation import report_tables as tables
from genrec.evaluation.report_html import render_html
from genrec.schema import STAGES

# ---- comparison ---------------------------------------------------------------------------------


def compare(current: Mapping, previous: Mapping) -> dict:
    """Per cell and metric: previous, current and the difference. Cells are matched by id."""
    prev_rows = {r["id"]: r for r in tables.all_rows(previous)}
    cur_rows = {r["id"]: r for r in tables.all_rows(current)}
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


# ---- markdown -----------------------------------------------------------------------------------


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(doc: Mapping) -> str:
    p = doc["protocol"]
    ks = p["ks"]
    out = [f"# genrec eval: {doc['suite']['name']}", ""]
    if doc["suite"].get("description"):
        out += [doc["suite"]["description"], ""]
    out += [f"- {line}" for line in tables.protocol_lines(doc, strong=lambda s: f"**{s}**")]
    out.append("")
    for metric in tables.headline_keys(ks)[:3]:
        header, rows = tables.pivot(doc, metric)
        out += [f"## {metric} (templates × modes)", "", _md_table(header, rows), ""]

    out += ["## Ranking", "", _md_table(*tables.ranking_table(doc))]
    out += ["", "## Outputs", "", _md_table(*tables.output_table(doc))]
    out += ["", "## Cost (latency in ms, p50 / p95; tokens per request)", ""]
    out.append(_md_table(["cell", *STAGES, *tables.COST_COLUMNS], tables.cost_rows(doc)))
    out += [
        "",
        f"Requests ran {p.get('concurrency', '?')} at a time, so latency includes queueing in "
        "the engine. It counts only requests served by a running engine (not cache hits, not "
        "requests that waited for the engine to start); `timed n` says how many.",
    ]
    out += _md_views(doc)
    if doc.get("thresholds"):
        out += ["", "## Thresholds", ""]
        rows = [
            [*cells, "pass" if passed else "**FAIL**"]
            for cells, passed in tables.threshold_rows(doc)
        ]
        out.append(_md_table(tables.THRESHOLD_HEADER, rows))
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


def _md_views(doc: Mapping) -> list[str]:
    """Cost beside gain, the cold-item view and the comparisons between inputs."""
    out = []
    if doc.get("cells"):
        out += ["", "## Cost beside gain", ""]
        out.append(_md_table(tables.COST_GAIN_HEADER, tables.cost_gain_rows(doc)))
        out += [
            "",
            "Gain: NDCG of the cell minus that of the candidates it was handed, in the "
            "retriever's order, paired by case (bootstrap 95 % interval, resampling users: a "
            "user's cases are drawn together).",
        ]
    if doc.get("cold_items"):
        out += ["", "## Cold items", "", tables.cold_caption(doc), ""]
        out.append(_md_table(tables.cold_header(doc), tables.cold_rows(doc)))
        if doc["cold_items"].get("inputs_paired"):
            out += ["", "Inputs compared on the cold cases alone:", ""]
            out.append(_md_table(tables.INPUTS_HEADER, tables.inputs_rows(doc["cold_items"])))
    if doc.get("inputs_paired"):
        out += ["", "## Inputs compared (paired by case)", ""]
        out.append(_md_table(tables.INPUTS_HEADER, tables.inputs_rows(doc)))
    return out


def _md_comparison(cmp: Mapping, ks: Sequence[int]) -> list[str]:
    keys = tables.headline_keys(ks)
    out = [
        f"## Compared with {cmp.get('previous_commit') or 'the previous run'} "
        f"({cmp.get('previous_started_at')})",
        "",
    ]
    if changes := tables.protocol_changes(cmp):
        out += [f"Protocol differs: {changes}", ""]
    rows = [
        [cid, *shown]
        for cid, shown in tables.comparison_rows(
            cmp, keys, lambda _, d: f"{tables.fmt(d['current'])} ({d['delta']:+.4f})"
        )
    ]
    out.append(_md_table(["cell", *(f"{k} (Δ)" for k in keys)], rows))
    if cmp.get("only_current"):
        out += ["", "New cells: " + ", ".join(cmp["only_current"])]
    if cmp.get("only_previous"):
        out += ["", "Cells no longer run: " + ", ".join(cmp["only_previous"])]
    return out


def write_reports(
    doc: Mapping, out: Path, samples: Mapping[str, Mapping[str, Sequence[float]]] | None = None
) -> dict[str, Path]:
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
