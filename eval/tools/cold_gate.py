"""A popularity-gated text channel for cold items on the published protocol (minutes, no LM).

    python eval/tools/cold_gate.py --data ../shared/data/ml-latest-small --out FILE.json
    GENREC_LM_VECTORS_LAYER=15 python eval/tools/cold_gate.py --encoder lm --data ... --out ...

LLM-ESR's argument is that text helps the long tail, where interaction IDs have little to learn
from. This measures the simplest form of it: the ID-only hybrid (itemknn + ease, weights from a
grid on validation) plus w x the semantic-neighbour score x g(n), where n is the candidate's
training interactions and g(n) = 1 / (1 + n / c), so the text counts most for the rarest items
(c = inf: ungated). Text vectors: ``--encoder``'s (genrec.index.item_vectors: the packaged
MiniLM by default; ``lm`` is the served model's hidden states at GENREC_LM_VECTORS_LAYER) over
each item's embedding text (title and genres). Each member's top 100 is min-max normalised, as
genrec.retrieval.hybrid fuses.
Validation (each user's second-last item, models fitted on the items before it) chooses the
weights, the channel's recency and (c, w) by NDCG@10 over all users; test (the last item, models
refitted on everything before it) reports that one choice against the ID-only hybrid, per user,
with a paired bootstrap 95 % interval, on all 610 users and on the cold-item view (targets with
at most 10 training interactions).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from genrec.evaluation.datasets import load_eval_dataset
from genrec.evaluation.metrics import ranking_metrics
from genrec.evaluation.paired import paired_bootstrap
from genrec.index.item_vectors import make_encoder
from genrec.retrieval.hybrid import normalised
from genrec.settings import Settings
from genrec.training.collaborative import EASE, ItemKNN
from genrec.training.data import build
from genrec.training.semantic import SemanticNeighbours, SemanticParams

COLD = 10
POOL = 100
GATES = [1.0, 3.0, 10.0, 30.0, float("inf")]
WEIGHTS = [0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0]
RECENCY = [0.5, 0.7, 0.9]


def top_normalised(scores: np.ndarray, history: np.ndarray) -> np.ndarray:
    """Dense row: the top POOL items (history masked) normalised as the hybrid normalises a
    member's list (genrec.retrieval.hybrid.normalised), 0 elsewhere."""
    s = scores.astype(np.float64)
    s[history] = -np.inf
    top = np.argpartition(-s, POOL)[:POOL]
    out = np.zeros(len(s))
    for i, v in normalised([(int(i), float(s[i])) for i in top]).items():
        out[i] = v
    return out


def member_rows(models: dict, histories) -> dict[str, np.ndarray]:
    out: dict[str, list[np.ndarray]] = {name: [] for name in models}
    for start in range(0, len(histories), 128):
        batch = histories[start : start + 128]
        for name, model in models.items():
            scores = np.asarray(model.scores(batch))
            out[name] += [
                top_normalised(scores[r], np.asarray(batch[r])) for r in range(len(batch))
            ]
    return {name: np.array(rows) for name, rows in out.items()}


def per_user(fused: np.ndarray, targets: np.ndarray, ids: list[str]) -> list[dict]:
    rows = []
    for u, t in enumerate(targets):
        top = np.argsort(-fused[u], kind="stable")[:20]
        rows.append(ranking_metrics([ids[i] for i in top], ids[t], (10, 20)))
    return rows


def mean(rows: list[dict], key: str = "ndcg@10") -> float:
    return float(np.mean([r[key] for r in rows]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True, help="ml-latest-small folder")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--encoder", default="minilm", help="minilm | e5 | lm (item_vectors)")
    args = ap.parse_args()
    ds = load_eval_dataset("movielens", path=args.data, min_interactions=5, split="test")
    data = build(ds.training_sequences(), list(ds.items), source=str(args.data))
    ids, n = data.item_ids, data.n_items
    at = {item_id: k for k, item_id in enumerate(ids)}
    train, _, val_targets = data.holdout()
    by_user = {c.user_id: at[c.target] for c in ds.cases}
    test_targets = np.array([by_user[u] for u in data.users])
    encoder = make_encoder(Settings(), args.encoder)
    vectors = encoder.encode([ds.items[i].embedding_text() for i in ids])
    vectors = np.asarray(vectors, dtype=np.float32)
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def fitted(fit_on, histories) -> tuple[dict[str, np.ndarray], np.ndarray]:
        models = {"itemknn": ItemKNN.fit(fit_on, n), "ease": EASE.fit(fit_on, n)}
        models |= {
            f"semantic-{r}": SemanticNeighbours(vectors, SemanticParams(recency=r)) for r in RECENCY
        }
        return member_rows(models, histories), np.bincount(fit_on.items, minlength=n)

    val, val_counts = fitted(train, train)
    test, test_counts = fitted(data.sequences, data.sequences)

    # the ID-only hybrid's weight, then the channel's recency (alone), then (c, w)
    id_line = {
        round(a, 2): mean(per_user(a * val["itemknn"] + (1 - a) * val["ease"], val_targets, ids))
        for a in np.arange(0.0, 1.01, 0.1)
    }
    a = max(id_line, key=lambda k: (id_line[k], k))
    recency_line = {r: mean(per_user(val[f"semantic-{r}"], val_targets, ids)) for r in RECENCY}
    r = max(recency_line, key=lambda k: (recency_line[k], -k))
    val_id = a * val["itemknn"] + (1 - a) * val["ease"]
    line = {}
    for c in GATES:
        gate = 1.0 / (1.0 + val_counts / c)
        for w in WEIGHTS:
            fused = val_id + w * val[f"semantic-{r}"] * gate[None, :]
            line[(c, w)] = mean(per_user(fused, val_targets, ids))
    c, w = max(line, key=lambda k: (line[k], -k[1]))

    test_id = a * test["itemknn"] + (1 - a) * test["ease"]
    gate = 1.0 / (1.0 + test_counts / c)
    rows = {
        "hybrid_id": per_user(test_id, test_targets, ids),
        "gated": per_user(test_id + w * test[f"semantic-{r}"] * gate[None, :], test_targets, ids),
        "channel_alone": per_user(test[f"semantic-{r}"], test_targets, ids),
    }
    views = {
        "all": np.arange(len(test_targets)),
        "cold": np.flatnonzero(test_counts[test_targets] <= COLD),
    }
    doc = {
        "encoder": encoder.model_id,
        "validation": {
            "id_weight_itemknn": a,
            "id_line_ndcg@10": {str(k): round(v, 5) for k, v in id_line.items()},
            "recency_line_ndcg@10": {str(k): round(v, 5) for k, v in recency_line.items()},
            "gate_line_ndcg@10": {f"c={k[0]} w={k[1]}": round(v, 5) for k, v in line.items()},
            "chosen": {"recency": r, "c": c if np.isfinite(c) else "inf", "w": w},
        },
        "test": {
            view: {
                "users": int(len(users)),
                "ndcg@10": {k: round(mean([v[u] for u in users]), 5) for k, v in rows.items()},
                "recall@20": {
                    k: round(mean([v[u] for u in users], "recall@20"), 5) for k, v in rows.items()
                },
                "gated - hybrid_id ndcg@10": paired_bootstrap(
                    [rows["gated"][u]["ndcg@10"] for u in users],
                    [rows["hybrid_id"][u]["ndcg@10"] for u in users],
                ),
            }
            for view, users in views.items()
        },
    }
    text = json.dumps(doc, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
