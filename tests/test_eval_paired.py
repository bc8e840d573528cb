"""The paired bootstrap: one case per user as before, a user's cases resampled together."""

from __future__ import annotations

import random

import pytest

from genrec.evaluation.paired import paired_bootstrap


def _values(n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.random() for _ in range(n)]


def test_one_case_per_user_is_the_plain_bootstrap():
    a, b = _values(200, 1), _values(200, 2)
    plain = paired_bootstrap(a, b)
    named = paired_bootstrap(a, b, groups=[f"u{i}" for i in range(200)])
    assert plain == named  # the same draws, to the bit
    assert plain["users"] == plain["resampled"] == 200
    # the plain percentile bootstrap, written out
    d = [x - y for x, y in zip(a, b, strict=True)]
    rng = random.Random(0)
    means = sorted(sum(d[rng.randrange(200)] for _ in range(200)) / 200 for _ in range(2000))
    assert plain["ci95_low"] == means[50] and plain["ci95_high"] == means[1950]


def test_a_users_cases_are_drawn_together():
    # 12 users, 20 cases each; a user's cases move together (one per-user effect plus noise),
    # as a tag-writing user's cases do: treating them as 240 independent draws understates the
    # uncertainty
    rng = random.Random(3)
    a, b, groups = [], [], []
    for user in range(12):
        effect = rng.gauss(0.0, 0.1)
        for _ in range(20):
            a.append(effect + rng.gauss(0.0, 0.01))
            b.append(0.0)
            groups.append(f"user{user}")
    by_case = paired_bootstrap(a, b)
    by_user = paired_bootstrap(a, b, groups=groups)
    assert by_user["diff"] == by_case["diff"]
    assert by_user["users"] == 240 and by_user["resampled"] == 12
    width = by_user["ci95_high"] - by_user["ci95_low"]
    assert width > 3 * (by_case["ci95_high"] - by_case["ci95_low"])
    # every resample's mean is a mean of whole users: the interval stays inside their range
    per_user = [sum(a[i * 20 : (i + 1) * 20]) / 20 for i in range(12)]
    assert min(per_user) <= by_user["ci95_low"] <= by_user["ci95_high"] <= max(per_user)


def test_bad_input():
    with pytest.raises(ValueError, match="one user each"):
        paired_bootstrap([1.0, 2.0], [0.0, 0.0], groups=["u"])
    with pytest.raises(ValueError, match="same cases"):
        paired_bootstrap([1.0], [0.0, 0.0])
    empty = paired_bootstrap([], [], groups=[])
    assert empty["diff"] is None and empty["resampled"] == 0
