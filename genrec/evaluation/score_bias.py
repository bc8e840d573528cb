"""What a mode's scores follow besides the user: popularity and title length.

Rank mode's bias is positional (which label wins); likelihood mode has none by construction (each
candidate is scored on its own), but a likelihood can still favour items the model has seen often
or short titles. For every request that returns scores for at least three items, Spearman's rho
between the scores and (a) the items' popularity in the training part, (b) their title length in
characters; the cell's figure is the mean over requests (None when no request qualifies).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from genrec.evaluation.metrics import mean


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for pos in order[i : j + 1]:
            out[pos] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rho (Pearson on ranks); None when either side is constant."""
    rx, ry = ranks(xs), ranks(ys)
    n = len(rx)
    mx, my = sum(rx) / n, sum(ry) / n
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    return cov / (vx * vy) ** 0.5 if vx and vy else None


def score_bias(
    records: Sequence[Mapping], popularity: Mapping[str, int], titles: Mapping[str, str]
) -> dict[str, float | None]:
    by_popularity: list[float] = []
    by_length: list[float] = []
    for r in records:
        items = [i for i in r.get("items", []) if len(i) > 3 and i[3] is not None]
        if not r.get("ok") or len(items) < 3:
            continue
        scores = [float(i[3]) for i in items]
        rho = spearman(scores, [float(popularity.get(i[0], 0)) for i in items])
        if rho is not None:
            by_popularity.append(rho)
        rho = spearman(scores, [float(len(titles.get(i[0], ""))) for i in items])
        if rho is not None:
            by_length.append(rho)
    return {
        "score_popularity_spearman": mean(by_popularity),
        "score_title_length_spearman": mean(by_length),
    }
