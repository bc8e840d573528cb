"""Reports from a results document: comparison with a previous run, markdown, HTML with plots."""

from __future__ import annotations

import base64
import copy

from genrec.evaluation.aggregate import cell_summary
from genrec.evaluation.report import compare, render_markdown, write_reports
from genrec.evaluation.report_html import render_html
from genrec.evaluation.splits import EvalCase

KS = [1, 5, 10, 20]


def record(user, items, *, cands=None, outputs=3, unmatched=(), dup=0, llm=100.0, hits=0):
    return {
        "user_id": user,
        "ok": True,
        "items": [[i, True, "label"] for i in items],
        "candidates": cands or list(items),
        "n_outputs": outputs,
        "unmatched": list(unmatched),
        "duplicates": dup,
        "usage": {"prompt_tokens": 500, "completion_tokens": 1},
        "timings": {
            "retrieve_ms": 10.0,
            "render_ms": 1.0,
            "llm_ms": llm,
            "ground_ms": 0.5,
            "total_ms": llm + 12,
        },
        "cache": {"hits": hits, "misses": 1 - hits},
        "template": "rank_default",
        "model": "m",
    }


CASES = {
    "u1": EvalCase("u1", ("h1", "h2"), "t1"),
    "u2": EvalCase("u2", ("h3",), "t2"),
    "u3": EvalCase("u3", ("h4",), "t3"),
}


def test_cell_summary_by_hand():
    records = [
        # target 2nd after the history item h1 is masked: rank 2
        record("u1", ["h1", "x", "t1"], outputs=4, unmatched=["zz"], dup=1),
        record("u2", ["a", "b"], cands=["a", "b", "t2"], llm=300.0),  # miss, but retrievable
        {"user_id": "u3", "ok": False, "error": {"type": "EngineError", "retryable": True}},
    ]
    s = cell_summary(records, CASES, KS)
    m = s["metrics"]
    assert s["users_completed"] == 3 and s["requests_failed"] == 1
    assert s["error_types"] == {"EngineError": 1}
    assert m["recall@1"] == 0.0 and m["recall@5"] == 1 / 3  # the failure counts as a miss
    assert m["mrr@5"] == (1 / 2) / 3
    assert m["candidate_recall"] == 1.0  # over the two answered requests
    assert m["validity_rate"] == 6 / 7 and m["hallucination_rate"] == 1 / 7
    assert m["duplicate_rate"] == 1 / 7
    assert m["in_history_rate"] == 1 / 5  # h1 among 5 returned items
    assert m["error_rate"] == 1 / 3 and m["empty_rate"] == 0.0
    assert s["latency_ms"]["llm"]["p50"] == 200.0 and m["latency_llm_p95"] == 290.0
    assert m["prompt_tokens"] == 500


def test_cache_hits_are_not_timed():
    s = cell_summary([record("u1", ["t1"], hits=1), record("u2", ["b"], llm=50)], CASES, KS)
    assert s["latency_requests"] == 1 and s["latency_ms"]["llm"]["p50"] == 50.0
    assert s["cache"]["hit_rate"] == 0.5


def doc_with(recall10: float) -> dict:
    cell = cell_summary([record("u1", ["t1"]), record("u2", ["b"])], CASES, KS)
    cell["metrics"]["recall@10"] = recall10
    return {
        "suite": {"name": "t", "description": ""},
        "protocol": {
            "dataset": "d",
            "source": "/d",
            "stats": {"users": 3, "items": 9},
            "min_interactions": 5,
            "split": "test",
            "users_evaluated": 2,
            "users_available": 3,
            "seed": 0,
            "candidates": 20,
            "history_len": 20,
            "ks": KS,
        },
        "environment": {"git_commit": "abc", "packages": {"genrec": "0.1"}},
        "wall_s": 1.0,
        "cells": [{"id": "p/rank/x", "profile": "p", "mode": "rank", "template_spec": "x", **cell}],
        "baselines": [
            {
                "id": "baseline/random",
                "name": "random",
                "mode": "baseline",
                "users_completed": 2,
                "metrics": {f"recall@{k}": 0.1 for k in KS},
            }
        ],
        "thresholds": [
            {
                "metric": "recall@10",
                "cell": "p/rank/x",
                "bound": ">= 0.9",
                "value": recall10,
                "passed": False,
            }
        ],
    }


def test_compare_and_render(tmp_path):
    prev, cur = doc_with(0.25), doc_with(0.5)
    cur["protocol"]["users_evaluated"] = 3
    cmp = compare(cur, prev)
    d = {c["id"]: c for c in cmp["cells"]}["p/rank/x"]["metrics"]["recall@10"]
    assert d == {"previous": 0.25, "current": 0.5, "delta": 0.25}
    assert cmp["protocol_changes"] == {"users_evaluated": {"previous": 2, "current": 3}}
    cur["comparison"] = cmp
    md = render_markdown(cur)
    assert "## Compared with abc" in md and "0.5000 (+0.2500)" in md
    assert "**FAIL**" in md and "| baseline | random |" in md
    html = render_html(cur, {"p/rank/x": {"total": [10.0, 20.0], "llm": [5.0, 8.0]}})
    pngs = html.split("data:image/png;base64,")[1:]
    assert len(pngs) == 2
    assert base64.b64decode(pngs[0].split("'")[0])[:4] == b"\x89PNG"
    assert "class='up'" in html  # a better recall is marked as such
    paths = write_reports(copy.deepcopy(cur), tmp_path)
    assert all(p.is_file() for p in paths.values())
