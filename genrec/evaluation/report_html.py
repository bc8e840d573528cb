"""report.html: the markdown report's tables (rows from report_tables.py) plus matplotlib plots
(Agg backend), embedded as base64 PNG so the one file is the whole report: no scripts, no external
links."""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence

from genrec.evaluation import report_tables as tables
from genrec.schema import STAGES

# ---- plots --------------------------------------------------------------------------------------


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def plot_metric_curves(doc: Mapping) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = doc["protocol"]["ks"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    rows = tables.all_rows(doc)
    colors = plt.get_cmap("tab20").colors  # 20 distinct colours: cells and baselines
    for ax, name in zip(axes, ("recall", "ndcg", "mrr"), strict=True):
        for i, r in enumerate(rows):
            ys = [r["metrics"].get(f"{name}@{k}") for k in ks]
            if any(y is None for y in ys):
                continue
            base = tables.is_baseline(r["id"])
            ax.plot(
                ks,
                ys,
                marker="o",
                linestyle="--" if base else "-",
                color=colors[i % len(colors)],
                label=r["id"],
                alpha=0.85,
            )
        ax.set_title(f"{name}@K")
        ax.set_xlabel("K")
        ax.set_xticks(ks)
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    return _png(fig)


def plot_latency(samples: Mapping[str, Mapping[str, Sequence[float]]]) -> str | None:
    """Box plots of total latency per cell, and the median time per stage."""
    cells = [c for c, s in samples.items() if s.get("total")]
    if not cells:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 0.5 * len(cells) + 2.5), sharey=True)
    pos = list(range(len(cells)))
    ax1.boxplot(
        [samples[c]["total"] for c in cells],
        positions=pos,
        orientation="horizontal",
        showfliers=True,
    )
    ax1.set_yticks(pos, cells, fontsize=8)
    ax1.set_xscale("log")
    ax1.set_xlabel("total latency per request (ms, log scale)")
    ax1.grid(alpha=0.3, axis="x")
    import statistics

    left = [0.0] * len(cells)
    for stage in STAGES[:-1]:  # the parts of the total, stacked
        meds = [statistics.median(samples[c].get(stage) or [0.0]) for c in cells]
        ax2.barh(range(len(cells)), meds, left=left, label=stage)
        left = [a + b for a, b in zip(left, meds, strict=True)]
    ax2.set_xlabel("median ms per stage")
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3, axis="x")
    return _png(fig)


# ---- html ---------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}
tr.baseline td{color:#555;font-style:italic}
.fail{color:#b00;font-weight:bold}.pass{color:#070}
.up{color:#070}.down{color:#b00}
code{background:#f4f4f4;padding:1px 4px}
"""


def _html_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], classes: Sequence[str] = ()
) -> str:
    h = "".join(f"<th>{html.escape(x)}</th>" for x in header)
    body = []
    for i, r in enumerate(rows):
        cls = f' class="{classes[i]}"' if i < len(classes) and classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{x}</td>" for x in r) + "</tr>")
    return f"<table><tr>{h}</tr>{''.join(body)}</table>"


def _views_html(doc: Mapping) -> list[str]:
    """Cost beside gain, the cold-item view, the comparisons between inputs (report.md's)."""
    parts = []
    if doc.get("cells"):
        parts.append("<h2>Cost beside gain</h2>")
        parts.append(_html_table(tables.COST_GAIN_HEADER, _escaped(tables.cost_gain_rows(doc))))
    if doc.get("cold_items"):
        parts.append(f"<h2>Cold items</h2><p>{html.escape(tables.cold_caption(doc))}</p>")
        parts.append(_html_table(tables.cold_header(doc), _escaped(tables.cold_rows(doc))))
        if doc["cold_items"].get("inputs_paired"):
            parts.append("<p>Inputs compared on the cold cases alone:</p>")
            rows = _escaped(tables.inputs_rows(doc["cold_items"]))
            parts.append(_html_table(tables.INPUTS_HEADER, rows))
    if doc.get("inputs_paired"):
        parts.append("<h2>Inputs compared (paired by case)</h2>")
        parts.append(_html_table(tables.INPUTS_HEADER, _escaped(tables.inputs_rows(doc))))
    return parts


def render_html(
    doc: Mapping, samples: Mapping[str, Mapping[str, Sequence[float]]] | None = None
) -> str:
    """A single self-contained HTML file: the markdown report's tables, plus plots."""
    ks = doc["protocol"]["ks"]
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>genrec eval: {esc(doc['suite']['name'])}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>genrec eval: {esc(doc['suite']['name'])}</h1>",
    ]
    bullets = tables.protocol_lines(doc, strong=lambda s: s)
    parts.append("<ul>" + "".join(f"<li>{esc(b)}</li>" for b in bullets) + "</ul>")

    for metric in tables.headline_keys(ks)[:3]:
        header, rows = tables.pivot(doc, metric)
        classes = ["baseline" if r[0] == "baseline" else "" for r in rows]
        parts.append(f"<h2>{esc(metric)}: templates × modes</h2>")
        parts.append(_html_table(header, _escaped(rows), classes))

    parts.append("<h2>Ranking</h2>")
    header, rows = tables.ranking_table(doc)
    classes = ["baseline" if tables.is_baseline(r["id"]) else "" for r in tables.all_rows(doc)]
    parts.append(_html_table(header, _escaped(rows), classes))
    parts.append(
        f"<img alt='metric@K curves' src='data:image/png;base64,{plot_metric_curves(doc)}'>"
    )
    parts.append("<h2>Outputs</h2>")
    header, rows = tables.output_table(doc)
    parts.append(_html_table(header, _escaped(rows)))
    parts.append("<h2>Cost</h2>")
    header = ["cell", *(f"{s} p50/p95 ms" for s in STAGES), *tables.COST_COLUMNS]
    parts.append(_html_table(header, _escaped(tables.cost_rows(doc))))
    if samples and (img := plot_latency(samples)):
        parts.append(f"<img alt='latency distributions' src='data:image/png;base64,{img}'>")
    else:
        parts.append(
            "<p>No latency plot: no request in this run reached a running engine (all answered "
            "from the cache or by earlier runs); rerun with <code>--no-cache --fresh</code> to "
            "measure.</p>"
        )
    parts += _views_html(doc)
    if doc.get("thresholds"):
        parts.append("<h2>Thresholds</h2>")
        rows = [
            [
                *map(esc, cells),
                "<span class='pass'>pass</span>" if passed else "<span class='fail'>FAIL</span>",
            ]
            for cells, passed in tables.threshold_rows(doc)
        ]
        parts.append(_html_table(tables.THRESHOLD_HEADER, rows))
    if cmp := doc.get("comparison"):
        keys = tables.headline_keys(ks)
        parts.append(
            f"<h2>Compared with {esc(str(cmp.get('previous_commit') or 'the previous run'))}</h2>"
        )
        if changes := tables.protocol_changes(cmp):
            parts.append(f"<p>Protocol differs: {esc(changes)}</p>")
        rows = [[esc(cid), *shown] for cid, shown in tables.comparison_rows(cmp, keys, _delta)]
        parts.append(_html_table(["cell", *(f"{k} (Δ)" for k in keys)], rows))
    env = doc.get("environment", {})
    parts.append("<h2>Environment</h2><pre>" + esc(json.dumps(env, indent=2)) + "</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _escaped(rows: Sequence[Sequence[str]]) -> list[list[str]]:
    return [[html.escape(x) for x in r] for r in rows]


def _delta(metric: str, d: Mapping) -> str:
    """The current value and its change, coloured by whether the change is for the better."""
    better = d["delta"] < 0 if metric in tables.LOWER_IS_BETTER else d["delta"] > 0
    cls = "" if d["delta"] == 0 else ("up" if better else "down")
    return f"{tables.fmt(d['current'])} <span class='{cls}'>({d['delta']:+.4f})</span>"
