"""Score fusion, the fusion weight's choice on validation, precision/F1 and position bias: the
arithmetic behind rank results and eval reports (no engine needed)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from genrec.evaluation.metrics import at_k_from_rank, candidate_metrics, position_bias
from genrec.modes.fusion import fuse, fuse_scores, fused_order, zscores
from genrec.training.fusion_weight import choose_fusion_weight


def test_weight_zero_keeps_the_lm_order_and_its_probabilities():
    ranked = [(2, 0.6), (0, 0.3), (1, 0.1)]
    order, parts = fused_order(ranked, [3.0, 2.0, 1.0], 0.0)
    assert order == ranked
    assert parts[2].lm_logprob == pytest.approx(math.log(0.6))
    assert parts[0].retrieval_score == 3.0


def test_weight_one_follows_the_retriever_and_shows_both_parts():
    ranked = [(2, 0.6), (0, 0.3), (1, 0.1)]
    order, parts = fused_order(ranked, [3.0, 2.0, 1.0], 1.0)
    assert [i for i, _ in order] == [0, 1, 2]
    assert parts[0].lm_logprob == pytest.approx(math.log(0.3))
    assert parts[0].fused == pytest.approx(order[0][1])


def test_fusion_is_unit_free_on_either_side():
    lm = [math.log(p) for p in (0.5, 0.2, 0.2, 0.1)]
    retr = [0.9, 0.1, 0.8, 0.3]
    a = fuse_scores(lm, retr, 0.4)
    b = fuse_scores(lm, [100 * r + 7 for r in retr], 0.4)  # another retriever's units
    assert a == pytest.approx(b)
    assert zscores([1.0, 1.0]) == [0.0, 0.0]


def test_a_middle_weight_can_beat_both_sides_and_is_chosen():
    # The LM alone puts the target second in example 1, the retriever second in example 2;
    # an equal blend puts it first in both.
    lm = [[math.log(0.45), math.log(0.35), math.log(0.2)], [math.log(0.5), math.log(0.3), -3.0]]
    retr = [[0.2, 0.9, 0.1], [0.25, 0.3, 0.0]]
    examples = [SimpleNamespace(target=1), SimpleNamespace(target=0)]
    got = choose_fusion_weight(lm, retr, examples)
    assert 0.0 < got["weight"] < 1.0
    assert got["validation_ndcg@10"] == pytest.approx(1.0)
    assert got["validation_ndcg@10_by_weight"]["0.00"] < 1.0
    assert got["validation_ndcg@10_by_weight"]["1.00"] < 1.0


def test_candidate_metrics_count_a_missed_target_as_zero():
    m = candidate_metrics([[0.1, 0.9], [0.5, 0.4]], [1, -1])
    assert m["ndcg@1"] == pytest.approx(0.5)
    assert m["top_pick_first_rate"] == pytest.approx(0.5)


def test_precision_and_f1_with_one_target():
    m = at_k_from_rank(3, [1, 5, 10])
    assert m["precision@1"] == 0.0 and m["f1@1"] == 0.0
    assert m["precision@5"] == pytest.approx(0.2)
    assert m["f1@5"] == pytest.approx(2 * 0.2 * 1.0 / 1.2)
    assert m["precision@10"] == pytest.approx(0.1)


def test_position_bias_shares_and_entropy():
    always_first = position_bias([0, 0, 0, 0], 4)
    assert always_first["first_rate"] == 1.0 and always_first["normalized_entropy"] == 0.0
    even = position_bias([0, 1, 2, 3, None], 4)
    assert even["share"] == [0.25] * 4 and even["n"] == 4
    assert even["normalized_entropy"] == pytest.approx(1.0)


def test_log_scores_fuse_like_the_probabilities_they_are_logs_of():
    probs = [(1, 0.5), (0, 0.3), (2, 0.2)]
    logs = [(i, math.log(p)) for i, p in probs]
    a, _ = fused_order(probs, [0.1, 0.9, 0.5], 0.5)
    b, parts = fused_order(logs, [0.1, 0.9, 0.5], 0.5, is_log=True)
    assert [i for i, _ in a] == [i for i, _ in b]
    assert [v for _, v in a] == pytest.approx([v for _, v in b])
    assert parts[1].lm_logprob == pytest.approx(math.log(0.5))


def test_fuse_is_a_pure_function_over_a_full_scoring():
    ranked = [(0, 0.6), (1, 0.3), (2, 0.1)]
    retrieval = [0.1, 0.2, 0.9]
    fused = fuse(ranked, retrieval, 3, 1.0)
    assert fused is not None and fused.weight == 1.0
    assert [i for i, _ in fused.ranked] == [2, 1, 0]  # the retriever's order at weight 1
    assert ranked == [(0, 0.6), (1, 0.3), (2, 0.1)]  # the mode's own output is untouched
    assert fused.parts[2].retrieval_score == 0.9
    # nothing to fuse: a partial scoring (a mode that writes text) or no candidates
    assert fuse(ranked[:2], retrieval, 3, 1.0) is None
    assert fuse([], [], 0, 1.0) is None
    # no retriever scores: the LM's order, weight 0 applied
    alone = fuse(ranked, [], 3, 0.5)
    assert alone is not None and alone.weight == 0.0 and alone.ranked == ranked
