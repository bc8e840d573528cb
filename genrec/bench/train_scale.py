"""The training core at scale, without Chroma: read a log into columns, index it against a
catalog JSONL's IDs, fit itemknn on the held-out split, validate (batched sparse ranks on the
validation sample), refit on everything. Prints one JSON document of timings.

    python -m genrec.bench.train_scale /work/scale-data/300k   # catalog.jsonl + log.csv
    /usr/bin/time -v python -m genrec.bench.train_scale DIR     # peak RSS
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from genrec.data.log_columns import read_columns
from genrec.training import validation
from genrec.training.collaborative import ItemKNN
from genrec.training.data import build_columns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="a folder with catalog.jsonl and log.csv")
    args = parser.parse_args()
    out: dict = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        out[f"{name}_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()

    with (args.data / "catalog.jsonl").open(encoding="utf-8") as f:
        ids = [json.loads(line)["id"] for line in f if line.strip()]
    lap("catalog")
    cols = read_columns(args.data / "log.csv", "csv")
    lap("read")
    data = build_columns(cols, ids)
    del cols
    lap("build")
    train, _, targets = data.holdout()
    rows = validation.sample(len(train), validation.VALIDATION_USERS, 0)
    model = ItemKNN.fit(train, data.n_items)
    lap("itemknn_fit")
    metrics, _ = validation.rank_users(model, train.take(rows), targets[rows], (10,))
    lap("validate")
    pop = np.bincount(train.items, minlength=data.n_items).astype(np.float32)
    out["popularity_ndcg@10"] = round(
        validation.popularity_metrics(pop, train.take(rows), targets[rows], (10,))["ndcg@10"], 5
    )
    out.update(
        itemknn_ndcg10=round(metrics["ndcg@10"], 5),
        entries=int(model.matrix.nnz),
        neighbours_kept=model.neighbours,
    )
    del model
    t = time.perf_counter()
    ItemKNN.fit(data.sequences, data.n_items)
    lap("itemknn_refit")
    out.update(users=len(data.users), events=data.n_events, items=data.n_items)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
