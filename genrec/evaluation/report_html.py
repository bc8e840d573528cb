"""report.html: the markdown report's tables plus matplotlib plots (Agg backend), embedded as
base64 PNG so the one file is the whole report: no scripts, no external links."""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Mapping, Sequence

from genrec.evaluation.report import (
    LOWER_IS_BETTER,
    RATE_METRICS,
    STAGES,
    _headline,
    _ms,
    all_rows,
    fmt,
    pivot,
    ranking_keys,
    render_markdown,
)

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
    rows = all_rows(doc)
    colors = plt.get_cmap("tab20").colors  # 20 distinct colours: cells and baselines
    for ax, name in zip(axes, ("recall", "ndcg", "mrr"), strict=True):
        for i, r in enumerate(rows):
            ys = [r["metrics"].get(f"{name}@{k}") for k in ks]
            if any(y is None for y in ys):
                continue
            base = r["id"].startswith("baseline/")
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
    for stage in ("retrieve", "render", "llm", "ground"):
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


def render_html(
    doc: Mapping, samples: Mapping[str, Mapping[str, Sequence[float]]] | None = None
) -> str:
    """A single self-contained HTML file: the markdown report's tables, plus plots."""
    p = doc["protocol"]
    ks = p["ks"]
    esc = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>genrec eval: {esc(doc['suite']['name'])}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>genrec eval: {esc(doc['suite']['name'])}</h1>",
    ]
    md = render_markdown(doc).splitlines()
    # The protocol bullets, as written for the markdown report.
    bullets = [line[2:] for line in md if line.startswith("- ")][:4]
    parts.append(
        "<ul>" + "".join(f"<li>{esc(b).replace('**', '')}</li>" for b in bullets) + "</ul>"
    )

    for metric in _headline(ks)[:3]:
        header, rows = pivot(doc, metric)
        classes = ["baseline" if r[0] == "baseline" else "" for r in rows]
        parts.append(f"<h2>{esc(metric)}: templates × modes</h2>")
        parts.append(_html_table(header, [[esc(x) for x in r] for r in rows], classes))

    rk = ranking_keys(ks)
    rows_all = all_rows(doc)
    parts.append("<h2>Ranking</h2>")
    parts.append(
        _html_table(
            ["cell", "n", *rk],
            [
                [
                    esc(r["id"]),
                    str(r.get("users_completed", "")),
                    *(fmt(r["metrics"].get(m)) for m in rk),
                ]
                for r in rows_all
            ],
            ["baseline" if r["id"].startswith("baseline/") else "" for r in rows_all],
        )
    )
    parts.append(
        f"<img alt='metric@K curves' src='data:image/png;base64,{plot_metric_curves(doc)}'>"
    )
    parts.append("<h2>Outputs</h2>")
    parts.append(
        _html_table(
            ["cell", *RATE_METRICS],
            [
                [esc(c["id"]), *(fmt(c["metrics"].get(m)) for m in RATE_METRICS)]
                for c in doc.get("cells", [])
            ],
        )
    )
    parts.append("<h2>Cost</h2>")
    lat_rows = []
    for c in doc.get("cells", []):
        lat = c.get("latency_ms", {})
        lat_rows.append(
            [
                esc(c["id"]),
                *(
                    f"{_ms(lat.get(s, {}).get('p50'))} / {_ms(lat.get(s, {}).get('p95'))}"
                    for s in STAGES
                ),
                fmt(c["metrics"].get("prompt_tokens"), 1),
                fmt(c["metrics"].get("completion_tokens"), 1),
                str(c.get("latency_requests", 0)),
                fmt(c.get("cache", {}).get("hit_rate"), 2),
            ]
        )
    parts.append(
        _html_table(
            [
                "cell",
                *(f"{s} p50/p95 ms" for s in STAGES),
                "prompt tok",
                "completion tok",
                "timed n",
                "cache hits",
            ],
            lat_rows,
        )
    )
    if samples and (img := plot_latency(samples)):
        parts.append(f"<img alt='latency distributions' src='data:image/png;base64,{img}'>")
    else:
        parts.append(
            "<p>No latency plot: no request in this run reached a running engine (all answered "
            "from the cache or by earlier runs); rerun with <code>--no-cache --fresh</code> to "
            "measure.</p>"
        )
    if doc.get("thresholds"):
        parts.append("<h2>Thresholds</h2>")
        parts.append(
            _html_table(
                ["metric", "cells", "bound", "value", "result"],
                [
                    [
                        esc(t["metric"]),
                        esc(t["cell"]),
                        esc(t["bound"]),
                        fmt(t["value"]),
                        "<span class='pass'>pass</span>"
                        if t["passed"]
                        else "<span class='fail'>FAIL</span>",
                    ]
                    for t in doc["thresholds"]
                ],
            )
        )
    if cmp := doc.get("comparison"):
        keys = _headline(ks)
        parts.append(
            f"<h2>Compared with {esc(str(cmp.get('previous_commit') or 'the previous run'))}</h2>"
        )
        if cmp.get("protocol_changes"):
            parts.append(
                "<p>Protocol differs: "
                + esc(
                    "; ".join(
                        f"{k}: {v['previous']} → {v['current']}"
                        for k, v in cmp["protocol_changes"].items()
                    )
                )
                + "</p>"
            )
        rows = []
        for c in cmp["cells"]:
            row = [esc(c["id"])]
            for k in keys:
                d = c["metrics"].get(k)
                if d is None:
                    row.append("–")
                    continue
                better = d["delta"] < 0 if k in LOWER_IS_BETTER else d["delta"] > 0
                cls = "" if d["delta"] == 0 else ("up" if better else "down")
                row.append(f"{fmt(d['current'])} <span class='{cls}'>({d['delta']:+.4f})</span>")
            rows.append(row)
        parts.append(_html_table(["cell", *(f"{k} (Δ)" for k in keys)], rows))
    env = doc.get("environment", {})
    parts.append("<h2>Environment</h2><pre>" + esc(json.dumps(env, indent=2)) + "</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)
