"""The hybrid's weight search (genrec.training.fusion_search) against the fusion it stands for:
for every grid combination, the target's rank is the one `fuse` gives, ties and misses included."""

from __future__ import annotations

import numpy as np

from genrec.retrieval.hybrid import fuse, normalised
from genrec.training.fusion_search import choose_weights, fused_target_ranks, weight_grid


def _lists(rng: np.random.Generator, users: int) -> tuple[dict[str, list], list[int], list[str]]:
    item_ids = [f"i{n}" for n in range(60)]
    lists: dict[str, list] = {"itemknn": [], "ease": [], "content": []}
    for _ in range(users):
        for name in lists:
            picked = rng.choice(60, size=int(rng.integers(0, 25)), replace=False)
            # Coarse scores, so lists tie often; sometimes all equal (a zero span).
            scores = np.sort(rng.integers(0, 4, size=len(picked)))[::-1] / 3.0
            lists[name].append(
                [(item_ids[i], float(s)) for i, s in zip(picked, scores, strict=True)]
            )
    targets = [int(t) for t in rng.integers(0, 60, size=users)]
    return lists, targets, item_ids


def test_the_ranks_are_fuses_for_every_combination():
    lists, targets, item_ids = _lists(np.random.default_rng(0), 80)
    names = list(lists)
    grid = weight_grid(names)
    assert len(grid) == 66 and all(w["content"] >= 0.05 for w in grid)
    weights = np.array([[w[n] for n in names] for w in grid])
    hits = 0
    for u, target in enumerate(targets):
        got = fused_target_ranks(weights, [lists[n][u] for n in names], item_ids[target], 20)
        for c, w in enumerate(grid):
            ids = [i for i, _ in fuse({n: normalised(lists[n][u]) for n in names}, w, 20)]
            want = ids.index(item_ids[target]) + 1 if item_ids[target] in ids else 0
            assert got[c] == want, (u, w)
            hits += want > 0
    assert hits > 500  # the check compared ranks, not only misses


def test_the_chosen_weights_are_the_best_fused_ndcg():
    lists, targets, item_ids = _lists(np.random.default_rng(1), 60)
    weights, metrics = choose_weights(lists, targets, item_ids)
    assert abs(sum(weights.values()) - 1.0) < 1e-9 or weights["content"] == 0.05

    def ndcg10(w: dict[str, float]) -> float:
        total = 0.0
        for u, target in enumerate(targets):
            ids = [i for i, _ in fuse({n: normalised(lists[n][u]) for n in lists}, w, 10)]
            if item_ids[target] in ids:
                total += 1 / np.log2(ids.index(item_ids[target]) + 2)
        return total / len(targets)

    best = max(ndcg10(w) for w in weight_grid(list(lists)))
    assert metrics["ndcg@10"] == round(best, 5) == round(ndcg10(weights), 5)
    assert 0 < metrics["ndcg@10"] <= metrics["recall@10"] <= metrics["recall@20"]
