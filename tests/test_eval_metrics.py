"""Metric functions against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from genrec.evaluation.baselines import (
    popularity_metrics,
    popularity_scores,
    random_order,
)
from genrec.evaluation.metrics import (
    RANKING_METRICS,
    candidate_metrics,
    percentile,
    ranking_metrics,
    ranking_metrics_from_scores,
    ratio,
    relevant_metrics,
)
from genrec.evaluation.splits import EvalCase

KS = (1, 5, 10, 20)


def test_target_at_rank_3():
    m = ranking_metrics(["a", "b", "t", "d"], "t", KS)
    assert m["recall@1"] == 0.0 and m["ndcg@1"] == 0.0 and m["mrr@1"] == 0.0
    assert m["recall@5"] == 1.0
    assert m["ndcg@5"] == pytest.approx(1 / math.log2(4))  # 0.5
    assert m["mrr@5"] == pytest.approx(1 / 3)
    assert m["ndcg@20"] == pytest.approx(0.5) and m["mrr@20"] == pytest.approx(1 / 3)


def test_target_first_is_perfect():
    m = ranking_metrics(["t", "a"], "t", KS)
    assert all(v == 1.0 for k, v in m.items() if not k.startswith(("precision", "f1")))
    # One relevant item: precision@K is 1/K and F1@K is 2/(K+1) on a hit.
    assert all(m[f"precision@{k}"] == pytest.approx(1 / k) for k in KS)
    assert all(m[f"f1@{k}"] == pytest.approx(2 / (k + 1)) for k in KS)


def test_target_outside_list_is_a_miss_at_every_k():
    m = ranking_metrics(["a", "b", "c"], "t", KS)
    assert set(m) == {f"{n}@{k}" for n in RANKING_METRICS for k in KS}
    assert all(v == 0.0 for v in m.values())


def test_target_just_beyond_k():
    ranked = [str(i) for i in range(5)] + ["t"]  # rank 6
    m = ranking_metrics(ranked, "t", KS)
    assert m["recall@5"] == 0.0 and m["recall@10"] == 1.0
    assert m["ndcg@10"] == pytest.approx(1 / math.log2(7))
    assert m["mrr@10"] == pytest.approx(1 / 6)


def test_scores_without_ties_match_the_list():
    scores = {"a": 3.0, "b": 2.0, "t": 1.0, "d": 0.5}
    assert ranking_metrics_from_scores(scores, "t", KS) == pytest.approx(
        ranking_metrics(["a", "b", "t", "d"], "t", KS)
    )


def test_ties_count_at_their_expected_value():
    # One item above; the target ties with two others: rank 2, 3 or 4, each with p = 1/3.
    scores = {"a": 5.0, "t": 2.0, "x": 2.0, "y": 2.0, "z": 1.0}
    m = ranking_metrics_from_scores(scores, "t", (1, 2, 3, 5))
    assert m["recall@1"] == 0.0
    assert m["recall@2"] == pytest.approx(1 / 3)
    assert m["recall@3"] == pytest.approx(2 / 3)
    assert m["recall@5"] == pytest.approx(1.0)
    assert m["mrr@5"] == pytest.approx((1 / 2 + 1 / 3 + 1 / 4) / 3)
    ndcg = (1 / math.log2(3) + 1 / math.log2(4) + 1 / math.log2(5)) / 3
    assert m["ndcg@5"] == pytest.approx(ndcg)
    assert m["ndcg@2"] == pytest.approx((1 / math.log2(3)) / 3)


def test_masked_items_leave_the_ranking():
    scores = {"h": 9.0, "a": 5.0, "t": 2.0}
    m = ranking_metrics_from_scores(scores, "t", (1, 2), mask=["h"])
    assert m["recall@1"] == 0.0 and m["recall@2"] == 1.0 and m["mrr@2"] == 0.5
    # a masked or unscored target is a miss
    assert ranking_metrics_from_scores(scores, "t", (5,), mask=["t"])["recall@5"] == 0.0
    assert ranking_metrics_from_scores(scores, "nope", (5,))["recall@5"] == 0.0


def test_several_relevant_items() -> None:
    m = relevant_metrics(["a", "x", "b"], frozenset({"a", "b", "c"}), [1, 3])
    assert m["recall@1"] == 1.0 and m["ndcg@1"] == 1.0
    assert m["recall@3"] == pytest.approx(2 / 3)
    assert m["precision@3"] == pytest.approx(2 / 3) and m["mrr@3"] == 1.0
    assert m["f1@3"] == pytest.approx(2 / 3)  # P = R = 2/3
    assert m["ndcg@3"] == pytest.approx((1 + 1 / 2) / (1 + 1 / 1.58496 + 1 / 2), abs=1e-4)


def test_every_form_agrees_with_one_relevant_item() -> None:
    """One definition: a list, a query with one relevant item and scored candidates (ties by
    position) give the same Recall/NDCG/MRR for the same rank."""
    ranked = ["a", "b", "t", "d"]
    one = ranking_metrics(ranked, "t", KS)
    assert relevant_metrics(ranked, frozenset({"t"}), KS) == one  # every metric, exactly
    assert ranking_metrics(ranked, frozenset({"t"}), KS) == one
    assert relevant_metrics(["x"], frozenset({"t"}), KS) == ranking_metrics(["x"], "t", KS)
    # candidates a, b, t, d scored so that t is third; b ties with t and wins by position
    got = candidate_metrics([[4.0, 2.0, 2.0, 1.0], [1.0, 0.0]], [2, -1], KS)
    for key in (f"{m}@{k}" for m in ("recall", "ndcg", "mrr") for k in KS):
        assert got[key] == pytest.approx(one[key] / 2, abs=1e-6), key


def test_popularity_baseline_masks_history_and_ties():
    counts = {"a": 10, "b": 7, "c": 7, "t": 3}
    scores = popularity_scores(counts, ["a", "b", "c", "t", "u"])
    assert scores["u"] == 0.0
    case = EvalCase("u1", history=("a",), target="b")  # a masked; b ties with c at ranks 1-2
    m = popularity_metrics(case, scores, (1, 2))
    assert m["recall@1"] == pytest.approx(0.5) and m["recall@2"] == 1.0
    assert m["mrr@2"] == pytest.approx(0.75)


def test_random_order_is_seeded_per_user():
    cands = [str(i) for i in range(20)]
    one = random_order(cands, seed=0, user_id="7")
    assert one == random_order(cands, seed=0, user_id="7")
    assert sorted(one, key=int) == cands and one != cands
    assert one != random_order(cands, seed=1, user_id="7")
    assert one != random_order(cands, seed=0, user_id="8")


def test_percentile_and_ratio():
    assert percentile([], 50) is None
    assert percentile([3.0], 95) == 3.0
    assert percentile([1, 2, 3, 4], 50) == pytest.approx(2.5)
    assert percentile(list(range(101)), 95) == pytest.approx(95)
    assert ratio(1, 0) is None and ratio(1, 4) == 0.25
