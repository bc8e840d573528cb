"""Paired comparison of two rankings of the same users: the mean difference of a per-user metric
with a percentile bootstrap 95 % confidence interval (users resampled with replacement, both
methods' values kept together, so what varies is only which users are drawn)."""

from __future__ import annotations

import random
from collections.abc import Sequence


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], *, samples: int = 2000, seed: int = 0
) -> dict[str, float | int | None]:
    """mean(a - b) and its 95 % interval; None values when there are no pairs."""
    if len(a) != len(b):
        raise ValueError("paired values need the same users on both sides")
    n = len(a)
    if n == 0:
        return {"diff": None, "ci95_low": None, "ci95_high": None, "users": 0}
    d = [x - y for x, y in zip(a, b, strict=True)]
    rng = random.Random(seed)
    means = sorted(sum(d[rng.randrange(n)] for _ in range(n)) / n for _ in range(samples))
    return {
        "diff": sum(d) / n,
        "ci95_low": means[int(0.025 * samples)],
        "ci95_high": means[min(samples - 1, int(0.975 * samples))],
        "users": n,
    }
