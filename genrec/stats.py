"""Small statistics shared by the benchmarks and the evaluation suite."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..100), numpy's default method; None when empty."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def rounded_percentile(values: Sequence[float], q: float, digits: int = 1) -> float | None:
    p = percentile(values, q)
    return None if p is None else round(p, digits)
