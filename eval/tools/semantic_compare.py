"""Paired comparisons between the retrievers of a suite run, overall and on the cold-item view.

    GENREC_HOME=... python eval/tools/semantic_compare.py eval/movielens-semantic.yaml \
        --out eval/baselines/movielens-semantic.compare.json

Reuses the bundle `genrec eval run` trained on exactly this split (same data fingerprint, same
models; otherwise it trains them, as the runner would), asks every retriever for each test user's
`candidates` items (the same requests as the suite's baseline rows), and prints per retriever
the ranking metrics and, per pair (text-aware vs its ID-only twin), the mean per-user difference
of NDCG@10 and Recall@10 with a paired bootstrap 95 % interval (genrec.evaluation.paired): on
all users, and on the users whose test target had at most COLD training interactions (the
cold-item view of issue #21; counted on the split's training part).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from genrec.evaluation.metrics import ranking_metrics
from genrec.evaluation.paired import paired_bootstrap
from genrec.evaluation.prepare import RunOptions, prepare
from genrec.evaluation.retrievers import candidate_lists, prepare_retrievers
from genrec.evaluation.runner import open_index
from genrec.evaluation.suite import load_suite
from genrec.settings import Settings

COLD = 10
PAIRS = [
    ("sasrec_text", "sasrec"),
    ("semantic", "content"),
    ("hybrid", "hybrid_id"),
    ("hybrid", "sasrec"),
]
KEYS = ("ndcg@10", "recall@10", "ndcg@20", "recall@20")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suite")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--data", type=Path)
    args = ap.parse_args()
    settings = Settings()
    suite = load_suite(args.suite)
    prepared = prepare(suite, settings, RunOptions(out=Path("/tmp/unused"), data=args.data))
    index = open_index(prepared, settings)
    retrievers = prepare_retrievers(prepared, settings, index)
    lists = candidate_lists(prepared, index, retrievers)
    counts = Counter(i for case in prepared.dataset.cases for i in case.history)
    cases = prepared.cases
    cold = [c.user_id for c in cases if counts[c.target] <= COLD]
    per_user = {
        name: {
            c.user_id: ranking_metrics(
                [i for i in got[c.user_id] if i not in set(c.history)], c.target, (10, 20)
            )
            for c in cases
        }
        for name, got in lists.items()
    }
    views = {"all": [c.user_id for c in cases], f"cold_target_le_{COLD}": cold}
    manifest = retrievers.bundle.manifest if retrievers.bundle else {"models": {}}
    models = manifest["models"]
    doc: dict = {
        "suite": suite.name,
        "users": len(cases),
        "cold_users": len(cold),
        "cold_definition": f"test target had <= {COLD} interactions in the training part",
        "default": retrievers.default,
        "bundle": retrievers.version,
        "manifest_validation": {n: m["validation"]["ndcg@10"] for n, m in models.items()},
        "item_vectors": manifest.get("item_vectors"),
        "hybrid_weights": {n: m["weights"] for n, m in models.items() if m["kind"] == "fusion"},
        "views": {},
    }
    for view, users in views.items():
        metrics = {
            name: {k: sum(rows[u][k] for u in users) / max(len(users), 1) for k in KEYS}
            for name, rows in per_user.items()
        }
        pairs = {}
        for a, b in PAIRS:
            if a in per_user and b in per_user:
                pairs[f"{a} - {b}"] = {
                    k: paired_bootstrap(
                        [per_user[a][u][k] for u in users], [per_user[b][u][k] for u in users]
                    )
                    for k in ("ndcg@10", "recall@10")
                }
        doc["views"][view] = {"users": len(users), "metrics": metrics, "paired": pairs}
    text = json.dumps(doc, indent=2, default=float)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    print(f"cold view: {len(cold)} of {len(cases)} users", file=sys.stderr)


if __name__ == "__main__":
    main()
