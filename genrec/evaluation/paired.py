"""Paired comparison of two rankings of the same cases: the mean difference of a per-case metric
with a percentile bootstrap 95 % confidence interval. The bootstrap resamples users with
replacement, each drawn user bringing all of their cases with both methods' values kept together,
so what varies is only which users are drawn. Where a user has several cases (the stated-need
protocol: up to 20 tag groups a user), their cases are not independent draws: resampling them one
by one would make the interval too narrow."""

from __future__ import annotations

import random
from collections.abc import Sequence


def paired_bootstrap(
    a: Sequence[float],
    b: Sequence[float],
    *,
    groups: Sequence[str] | None = None,
    samples: int = 2000,
    seed: int = 0,
) -> dict[str, float | int | None]:
    """mean(a - b) over the cases and its 95 % interval; ``groups`` names each case's user
    (None: every case its own user). None values when there are no pairs. ``users``: the
    cases compared; ``resampled``: the users the bootstrap drew from."""
    if len(a) != len(b) or (groups is not None and len(groups) != len(a)):
        raise ValueError("paired values need the same cases on both sides, and one user each")
    n = len(a)
    if n == 0:
        return {"diff": None, "ci95_low": None, "ci95_high": None, "users": 0, "resampled": 0}
    d = [x - y for x, y in zip(a, b, strict=True)]
    # per user (in order of first appearance): the sum of their cases' differences, and how many
    sums: list[float] = []
    sizes: list[int] = []
    at: dict[str, int] = {}
    for i, diff in enumerate(d):
        key = str(i) if groups is None else groups[i]
        if key not in at:
            at[key] = len(sums)
            sums.append(0.0)
            sizes.append(0)
        sums[at[key]] += diff
        sizes[at[key]] += 1
    g = len(sums)
    rng = random.Random(seed)
    means = []
    for _ in range(samples):
        drawn = [rng.randrange(g) for _ in range(g)]
        means.append(sum(sums[j] for j in drawn) / sum(sizes[j] for j in drawn))
    means.sort()
    return {
        "diff": sum(d) / n,
        "ci95_low": means[int(0.025 * samples)],
        "ci95_high": means[min(samples - 1, int(0.975 * samples))],
        "users": n,
        "resampled": g,
    }
