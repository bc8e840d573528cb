"""score_bias: what a cell's scores follow besides the user (popularity, title length)."""

from __future__ import annotations

import pytest

from genrec.evaluation.score_bias import ranks, score_bias, spearman


def test_ranks_share_ties_and_spearman_reads_order_only():
    assert ranks([3.0, 1.0, 2.0, 2.0]) == [4.0, 1.0, 2.5, 2.5]
    assert spearman([1, 2, 3], [10, 200, 3000]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None


def test_score_bias_averages_over_requests_with_scores():
    popularity = {"a": 50, "b": 10, "c": 1, "d": 5}
    titles = {"a": "A", "b": "Bb", "c": "Ccc", "d": "Dddd"}
    records = [
        # scores follow popularity exactly, and run against title length
        {
            "ok": True,
            "items": [
                ["a", True, "score", 3.0],
                ["b", True, "score", 2.0],
                ["c", True, "score", 1.0],
            ],
        },
        # scores against popularity; title length with them
        {
            "ok": True,
            "items": [
                ["c", True, "score", 3.0],
                ["d", True, "score", 2.5],
                ["b", True, "score", 1.0],
            ],
        },
        {"ok": True, "items": [["a", True, "label", 0.9], ["b", True, "label", 0.1]]},  # < 3
        {"ok": False, "items": []},
        {"ok": True, "items": [["a", True, "exact"], ["b", True, "exact"], ["c", True, "exact"]]},
    ]
    got = score_bias(records, popularity, titles)
    assert got["score_popularity_spearman"] == pytest.approx((1.0 - 1.0) / 2)
    assert got["score_title_length_spearman"] == pytest.approx((-1.0 + 0.5) / 2)
    assert score_bias(records[2:], popularity, titles) == {
        "score_popularity_spearman": None,
        "score_title_length_spearman": None,
    }
