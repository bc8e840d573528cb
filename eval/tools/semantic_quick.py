"""The semantic-neighbour channel on the published protocol, in process (minutes, no LM engine).

    GENREC_HOME=... python eval/tools/semantic_quick.py lm minilm e5 --out FILE.json

For each encoder's item vectors (genrec.index.item_vectors; the set must exist for the
evaluation collection, e.g. from `genrec eval run eval/movielens-semantic.yaml`):
validation (each user's second-last item, retrievers fitted on the items before it) chooses the
channel's recency (0.5/0.7/0.9) and its weight in the hybrid (a line search over w in 0..0.5,
the ID-only hybrid's weights scaled by 1 - w; the ID-only weights come from the same grid as
`genrec train`'s hybrid); test (each user's last item, retrievers refitted on everything before
it) compares hybrid+semantic with the ID-only hybrid and semantic with content, per user, with a
paired bootstrap 95 % interval, on all users and on those whose test target had <= 10
training interactions. Retrievers see each user's whole history here (the suite's baseline rows
see the last 20 items), so its numbers are its own, not the suite's rows.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import numpy as np

from genrec.evaluation.metrics import ranking_metrics
from genrec.evaluation.paired import paired_bootstrap
from genrec.evaluation.prepare import RunOptions, prepare
from genrec.evaluation.retrievers import training_sequences
from genrec.evaluation.suite import load_suite
from genrec.index import CatalogIndex
from genrec.index.item_vectors import read_item_vectors, vectors_name
from genrec.index.store import ChromaStore
from genrec.retrieval.hybrid import fuse
from genrec.settings import Settings
from genrec.training import validation
from genrec.training.collaborative import EASE, EASEParams, ItemKNN, ItemKNNParams
from genrec.training.data import build
from genrec.training.fusion_search import KS, choose_weights
from genrec.training.text import fit_semantic
from genrec.training.train import MIN_POOL, _content_lists

COLD = 10
SEMANTIC_WEIGHTS = [round(0.05 * i, 2) for i in range(11)]


def lists_for(model, hist, targets, rows, item_ids, pop=None):
    _, found = validation.rank_users(
        model, hist, targets, KS, lists_for=rows, pool=MIN_POOL, popularity=pop
    )
    return [[(item_ids[i], s) for i, s in found[int(r)]] for r in rows]


def per_user(lists, weights, targets, item_ids):
    out = []
    for u, t in enumerate(targets):
        fused = fuse({n: lists[n][u] for n in weights}, weights, 20)
        out.append(ranking_metrics([i for i, _ in fused], item_ids[t], (10, 20)))
    return out


def mean(rows, key):
    return sum(r[key] for r in rows) / max(len(rows), 1)


def base_lists(settings, p, index, data, split):
    """ID-only members' and content's top lists for validation or test users."""
    train, _, val_targets = data.holdout()
    if split == "validation":
        hist, targets, fit_on = train, val_targets, train
    else:
        hist, fit_on = data.sequences, data.sequences
        pos = {i: k for k, i in enumerate(data.item_ids)}
        by_user = {c.user_id: pos[c.target] for c in p.dataset.cases}
        targets = np.array([by_user[u] for u in data.users])
    rows = np.arange(len(hist))
    pop = np.bincount(fit_on.items, minlength=data.n_items).astype(np.float32)
    lists = {
        "itemknn": lists_for(
            ItemKNN.fit(fit_on, data.n_items, ItemKNNParams()),
            hist,
            targets,
            rows,
            data.item_ids,
            pop,
        ),
        "ease": lists_for(
            EASE.fit(fit_on, data.n_items, EASEParams()), hist, targets, rows, data.item_ids, pop
        ),
        "content": _content_lists(index, hist, data.item_ids),
    }
    counts = np.bincount(fit_on.items, minlength=data.n_items)
    return {"lists": lists, "hist": hist, "targets": targets, "cold": counts[targets] <= COLD}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("encoders", nargs="+")
    ap.add_argument("--suite", default="eval/movielens-semantic.yaml")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--cache", type=Path, default=Path(".genrec/semantic_quick.pkl"))
    args = ap.parse_args()
    settings = Settings()
    p = prepare(
        load_suite(args.suite), settings, RunOptions(out=Path("/tmp/unused"), progress=False)
    )
    data = build(training_sequences(p), list(p.dataset.items), source=p.dataset.source)
    index = CatalogIndex(settings, p.collection)
    if args.cache.is_file():
        cached = pickle.loads(args.cache.read_bytes())
    else:
        cached = {s: base_lists(settings, p, index, data, s) for s in ("validation", "test")}
        v = cached["validation"]
        cached["id_weights"], _ = choose_weights(v["lists"], v["targets"], data.item_ids)
        args.cache.write_bytes(pickle.dumps(cached))
    id_w = cached["id_weights"]
    print("ID-only hybrid weights (validation grid):", id_w, file=sys.stderr, flush=True)
    digest = index.metadata.get("genrec_digest")
    doc = {
        "id_weights": id_w,
        "cold_definition": f"target had <= {COLD} training interactions",
        "encoders": {},
    }
    for enc in args.encoders:
        store = ChromaStore(settings, vectors_name(p.collection, enc), model_id="")
        store.model_id = store.recorded_model() or ""
        text = read_item_vectors(store, digest, data.item_ids)
        val, test = cached["validation"], cached["test"]
        entry, _ = fit_semantic(text, val["hist"], val["targets"], np.zeros(0, int))
        from genrec.training.semantic import SemanticNeighbours, SemanticParams

        model = SemanticNeighbours(text, SemanticParams(**entry["params"]))
        sem_val = lists_for(
            model, val["hist"], val["targets"], np.arange(len(val["hist"])), data.item_ids
        )
        line = {}
        for w in SEMANTIC_WEIGHTS:
            weights = {**{k: v * (1 - w) for k, v in id_w.items()}, "semantic": w}
            rows = per_user(
                {**val["lists"], "semantic": sem_val}, weights, val["targets"], data.item_ids
            )
            line[w] = mean(rows, "ndcg@10")
        best_w = max(line, key=lambda w: (line[w], -w))
        sem_test = lists_for(
            model, test["hist"], test["targets"], np.arange(len(test["hist"])), data.item_ids
        )
        lists = {**test["lists"], "semantic": sem_test}
        with_sem = {**{k: v * (1 - best_w) for k, v in id_w.items()}, "semantic": best_w}
        rows = {
            "hybrid_id": per_user(lists, id_w, test["targets"], data.item_ids),
            "hybrid_semantic": per_user(lists, with_sem, test["targets"], data.item_ids),
            "content": per_user(lists, {"content": 1.0}, test["targets"], data.item_ids),
            "semantic": per_user(lists, {"semantic": 1.0}, test["targets"], data.item_ids),
        }
        views = {"all": np.ones(len(test["targets"]), bool), "cold": test["cold"]}
        out = {
            "semantic_validation": entry["validation"],
            "recency_tried": entry["recency_tried"],
            "weight_line_validation_ndcg@10": {str(k): round(v, 5) for k, v in line.items()},
            "chosen_weight": best_w,
            "test": {},
        }
        for view, mask in views.items():
            users = np.flatnonzero(mask)
            out["test"][view] = {
                "users": int(len(users)),
                "metrics": {
                    n: {
                        k: round(mean([r[u] for u in users], k), 5)
                        for k in ("ndcg@10", "recall@10", "ndcg@20", "recall@20")
                    }
                    for n, r in rows.items()
                },
                "paired": {
                    f"{a} - {b}": {
                        k: paired_bootstrap(
                            [rows[a][u][k] for u in users], [rows[b][u][k] for u in users]
                        )
                        for k in ("ndcg@10", "recall@10")
                    }
                    for a, b in (("hybrid_semantic", "hybrid_id"), ("semantic", "content"))
                },
            }
        doc["encoders"][enc] = out
        print(enc, json.dumps(out), flush=True)
    if args.out:
        args.out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
