"""What each embedding model costs and finds, on ml-latest-small: items embedded per CPU second,
and content retrieval's quality over all 9,742 movies (exact search, no Chroma) for two kinds of
need: a tag people wrote (each tag put on at least 3 movies is a query, the movies that carry it
are relevant) and a history (a user's last 10 movies rated >= 4, their mean vector as the query,
the next movie they rated >= 4 the target). Prints JSON (docs/ingest.md has the figures).

    python -m genrec.bench.embedders --data ../shared/data/ml-latest-small \
        [--models all-MiniLM-L6-v2,all-MiniLM-L6-v2-int8,all-MiniLM-L6-v2-static]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from genrec.data.movielens import load_movielens_folder
from genrec.embeddings import INT8_MODEL, PACKAGED_MODEL, STATIC_MODEL, Embedder
from genrec.settings import Settings

K = 20
MIN_TAGGED = 3  # a tag on fewer movies says little about retrieval
HISTORY = 10


def tag_queries(folder: Path, known: set[str]) -> dict[str, set[str]]:
    """Tag text (lower-cased) -> the catalog movies it was put on, for tags on >= MIN_TAGGED."""
    movies: dict[str, set[str]] = defaultdict(set)
    with (folder / "tags.csv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            tag = " ".join(row["tag"].lower().split())
            if tag and row["movieId"] in known:
                movies[tag].add(row["movieId"])
    return {t: m for t, m in sorted(movies.items()) if len(m) >= MIN_TAGGED}


def history_cases(folder: Path, known: set[str]) -> list[tuple[list[str], str]]:
    """Per user with more than HISTORY movies rated >= 4: (the HISTORY before the last, last)."""
    liked: dict[str, list[tuple[int, str]]] = defaultdict(list)
    with (folder / "ratings.csv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if float(row["rating"]) >= 4 and row["movieId"] in known:
                liked[row["userId"]].append((int(row["timestamp"]), row["movieId"]))
    cases = []
    for user in sorted(liked, key=int):
        seq = [m for _, m in sorted(liked[user])]
        if len(seq) > HISTORY:
            cases.append((seq[-HISTORY - 1 : -1], seq[-1]))
    return cases


def _ndcg(ranked: list[int], relevant: set[int]) -> float:
    gain = sum(1 / np.log2(r + 2) for r, i in enumerate(ranked) if i in relevant)
    ideal = sum(1 / np.log2(r + 2) for r in range(min(len(relevant), len(ranked))))
    return gain / ideal


def measure(model: str, settings: Settings, folder: Path) -> dict[str, object]:
    items = load_movielens_folder(folder)
    ids = [it.id for it in items]
    row = {item_id: n for n, item_id in enumerate(ids)}
    embedder = Embedder(settings, model_path=model)
    texts = [it.embedding_text() for it in items]
    embedder.encode(texts[:64])  # load and warm up outside the clock
    cpu = time.process_time()
    vectors = embedder.encode(texts)
    per_cpu_s = len(texts) / (time.process_time() - cpu)

    tags = tag_queries(folder, set(ids))
    queries = embedder.encode(list(tags), query=True)
    recalls, ndcgs = [], []
    for q, relevant_ids in zip(queries, tags.values(), strict=True):
        top = np.argsort(-(vectors @ q), kind="stable")[:K].tolist()
        relevant = {row[i] for i in relevant_ids}
        recalls.append(len(relevant & set(top)) / min(len(relevant), K))
        ndcgs.append(_ndcg(top, relevant))

    hits = []
    cases = history_cases(folder, set(ids))
    for history, target in cases:
        profile = vectors[[row[i] for i in history]].mean(axis=0)
        scores = vectors @ profile
        scores[[row[i] for i in history]] = -np.inf  # never recommend what they had
        top = np.argpartition(-scores, K)[:K]
        hits.append(row[target] in set(top.tolist()))
    return {
        "model": model,
        "backend": embedder.backend,
        "items_per_cpu_s": round(per_cpu_s, 1),
        f"tag_queries_recall@{K}": round(float(np.mean(recalls)), 4),
        f"tag_queries_ndcg@{K}": round(float(np.mean(ndcgs)), 4),
        "tag_queries": len(tags),
        f"history_recall@{K}": round(float(np.mean(hits)), 4),
        "history_users": len(cases),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/ml-latest-small"))
    parser.add_argument("--models", default=f"{PACKAGED_MODEL},{INT8_MODEL},{STATIC_MODEL}")
    args = parser.parse_args(argv)
    settings = Settings()
    rows = [measure(m, settings, args.data) for m in args.models.split(",") if m]
    print(json.dumps({"benchmark": "embedders", "data": str(args.data), "models": rows}, indent=1))


if __name__ == "__main__":
    main()
