"""The one implementation of the ranking metrics (Recall, precision, F1, NDCG, MRR at K) that
evaluation, training, the fusion weight's search and query sets all use, and the output-quality
rates beside them.

Ranking metrics are over the *full* ranking: a relevant item that is not in the returned list is a
miss (it contributes 0), exactly as if every unreturned item were ranked below the list. Every
form below takes its gains from :func:`gain`, so a number means the same wherever it is reported.

The forms, by what a caller holds:
- a ranked list and one target or several relevant items (what the recommender returns; query
  sets have several): :func:`ranking_metrics`, the latter through :func:`relevant_metrics`;
- one target and scores over items (the popularity baseline): :func:`ranking_metrics_from_scores`;
  ties are resolved by their *expected* value under a uniformly random tie-break, so no arbitrary
  order (item ID, insertion order) flatters a method;
- one target among scored candidates, ties broken by candidate order (a stable sort, as serving
  does; the fusion weight and fine-tuning validation): :func:`candidate_metrics`;
- a batch of users' score rows (training validation, vectorised, never users x items at once):
  :func:`target_ranks` / :func:`sparse_target_ranks` turn a batch into per-user ranks and
  :func:`metrics_from_ranks` averages them, with the tie rule of the scores form.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet

import numpy as np
import scipy.sparse as sp

from genrec.stats import percentile  # noqa: F401 - part of this module's API

DEFAULT_KS: tuple[int, ...] = (1, 5, 10, 20)
RANKING_METRICS: tuple[str, ...] = ("recall", "precision", "f1", "ndcg", "mrr")


def gain(rank: int) -> float:
    """The discounted gain of a relevant item at 1-based ``rank``: 1 / log2(rank + 1)."""
    return 1.0 / math.log2(rank + 1)


# ---------------------------------------------------------------------- one target


def rank_of(ranked: Sequence[str], target: str) -> int | None:
    """1-based position of `target` in `ranked`, None when it is absent."""
    for i, item in enumerate(ranked, start=1):
        if item == target:
            return i
    return None


def at_k_from_rank(rank: int | None, ks: Iterable[int]) -> dict[str, float]:
    """Recall (= hit rate with one target), precision, F1, NDCG and MRR at each K for a target
    at `rank`. With one relevant item, precision@K is hit/K and F1@K = 2PR/(P+R) = 2/(K+1) on a
    hit: both are recall scaled by a constant of K, reported because readers expect them."""
    out: dict[str, float] = {}
    for k in ks:
        hit = rank is not None and rank <= k
        out[f"recall@{k}"] = 1.0 if hit else 0.0
        out[f"precision@{k}"] = 1.0 / k if hit else 0.0
        out[f"f1@{k}"] = 2.0 / (k + 1) if hit else 0.0
        out[f"ndcg@{k}"] = gain(rank) if hit else 0.0
        out[f"mrr@{k}"] = 1.0 / rank if hit else 0.0
    return out


def ranking_metrics(
    ranked: Sequence[str], target: str | AbstractSet[str], ks: Iterable[int]
) -> dict[str, float]:
    """Metrics for a ranked list against one target (a string) or a set of relevant items; a
    relevant item outside the list is a miss."""
    if isinstance(target, str):
        return at_k_from_rank(rank_of(ranked, target), ks)
    return relevant_metrics(ranked, frozenset(target), ks)


def ranking_metrics_from_scores(
    scores: Mapping[str, float],
    target: str,
    ks: Iterable[int],
    *,
    mask: Iterable[str] = (),
) -> dict[str, float]:
    """Expected metrics when items are ranked by descending score, masked items removed.

    With `g` items scoring strictly higher than the target and `t` items tied with it (the target
    included), the target's rank is uniform over g+1 .. g+t; each metric is averaged over those
    positions. A target without a score, or masked, is a miss.
    """
    ks = list(ks)
    masked = set(mask)
    if target not in scores or target in masked:
        return at_k_from_rank(None, ks)
    s = scores[target]
    greater = tied = 0
    for item, v in scores.items():
        if item in masked:
            continue
        if v > s:
            greater += 1
        elif v == s:
            tied += 1
    positions = range(greater + 1, greater + tied + 1)
    total = {key: 0.0 for key in at_k_from_rank(None, ks)}
    for r in positions:
        for key, v in at_k_from_rank(r, ks).items():
            total[key] += v
    return {key: v / tied for key, v in total.items()}


def candidate_rank(scores: Sequence[float], target: int) -> int | None:
    """1-based rank of candidate ``target`` under ``scores`` (higher first, ties by position);
    None when the target is not a candidate (``target < 0``)."""
    if target < 0:
        return None
    t = scores[target]
    return 1 + sum(1 for i, s in enumerate(scores) if s > t or (s == t and i < target))


def candidate_metrics(
    scores: Sequence[Sequence[float]], targets: Sequence[int], ks: Iterable[int] = DEFAULT_KS
) -> dict[str, float]:
    """Mean Recall/NDCG/MRR at each K over examples, each a score per candidate and the target's
    candidate position (-1: not among them, a miss), and how often the top pick was the first
    candidate (``top_pick_first_rate``); rounded to 6 places."""
    ks = list(ks)
    n = max(1, len(targets))
    per = [at_k_from_rank(candidate_rank(s, t), ks) for s, t in zip(scores, targets, strict=True)]
    out: dict[str, float] = {}
    for k in ks:
        for name in ("recall", "ndcg", "mrr"):
            out[f"{name}@{k}"] = round(sum(m[f"{name}@{k}"] for m in per) / n, 6)
    tops = [max(range(len(s)), key=lambda i: (s[i], -i)) for s in scores if len(s)]
    out["top_pick_first_rate"] = round(sum(1 for t in tops if t == 0) / max(1, len(tops)), 6)
    return out


# ---------------------------------------------------------------------- several relevant items


def relevant_metrics(
    ranked: Sequence[str], relevant: frozenset[str], ks: Iterable[int]
) -> dict[str, float]:
    """Recall@K = relevant items in the top K / min(K, number relevant) (so a query with 50
    relevant items can reach 1.0), NDCG@K with binary gains over the same ideal (DCG / IDCG),
    precision@K = hits / K, F1@K their harmonic mean, MRR@K = 1 / the first hit's rank. With
    one relevant item every number equals :func:`at_k_from_rank`'s, to the last bit."""
    out: dict[str, float] = {}
    for k in ks:
        ideal = min(k, len(relevant))
        hits = [r for r, item in enumerate(ranked[:k], start=1) if item in relevant]
        out[f"recall@{k}"] = len(hits) / ideal
        out[f"precision@{k}"] = len(hits) / k
        out[f"f1@{k}"] = 2 * len(hits) / (k + ideal)  # 2PR / (P + R), simplified
        out[f"ndcg@{k}"] = sum(gain(r) for r in hits) / sum(gain(r) for r in range(1, ideal + 1))
        out[f"mrr@{k}"] = 1.0 / hits[0] if hits else 0.0
    return out


def candidate_recall(candidates: Sequence[str], target: str | AbstractSet[str]) -> float:
    """The share of what is relevant that the candidates hold (the ceiling of any re-ranker):
    1 or 0 for one target; found / min(N, number relevant) for several, as recall@N."""
    if isinstance(target, str):
        return 1.0 if target in candidates else 0.0
    ideal = min(len(candidates), len(target))
    return len(target & set(candidates)) / ideal if ideal else 0.0


# ---------------------------------------------------------------------- batches of score rows


def _flat(histories: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(row, item) of every history entry, as two int64 arrays."""
    lengths = np.fromiter((len(h) for h in histories), np.int64, len(histories))
    rows = np.repeat(np.arange(len(histories), dtype=np.int64), lengths)
    if not len(rows):
        return rows, rows
    return rows, np.concatenate([np.asarray(h, dtype=np.int64) for h in histories])


def _check(shape: tuple[int, ...], histories: Sequence, targets: Sequence[int]) -> np.ndarray:
    tgt = np.asarray(targets, dtype=np.int64)
    if len(shape) != 2 or shape[0] != len(histories) or len(tgt) != len(histories):
        raise ValueError(
            f"scores must be (users, items) with one history and target per row; got scores "
            f"{shape}, {len(histories)} histories, {len(tgt)} targets"
        )
    if shape[0] and (tgt.min() < 0 or tgt.max() >= shape[1]):
        raise ValueError(f"targets must be item indices in 0..{shape[1] - 1}")
    return tgt


def sparse_target_ranks(
    scores: sp.csr_matrix, histories: Sequence[Sequence[int]], targets: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """target_ranks for sparse score rows (a missing entry scores 0), exact: it reads only
    the stored entries and counts the implicit zeros."""
    scores = sp.csr_matrix(scores)
    n_users, n_items = scores.shape
    tgt = _check(scores.shape, histories, targets)
    users = np.arange(n_users, dtype=np.int64)
    rows, items = _flat(histories)
    keys = np.unique(rows * n_items + items)  # distinct (user, history item)
    hist = sp.csr_matrix(
        (np.ones(len(keys), np.float32), (keys // n_items, keys % n_items)),
        shape=(n_users, n_items),
    )
    # Open (not history) stored scores: the scores less their history entries. An entry that
    # becomes 0 is dropped, and counts among the items that score 0, as it should.
    open_ = (scores - scores.multiply(hist)).tocsr()
    open_.eliminate_zeros()
    valid = np.asarray(hist[users, tgt]).ravel() == 0
    target_score = np.asarray(scores[users, tgt]).ravel().astype(scores.dtype)
    open_row = np.repeat(users, np.diff(open_.indptr))
    t = target_score[open_row]
    greater = np.bincount(open_row[open_.data > t], minlength=n_users)
    tied = np.bincount(open_row[open_.data == t], minlength=n_users)
    # Items neither stored nor in the history score 0.
    zeros = n_items - np.diff(open_.indptr) - np.diff(hist.indptr)
    greater = greater + np.where(target_score < 0, zeros, 0)
    tied = tied + np.where(target_score == 0, zeros, 0)
    return greater, np.maximum(tied, 1), valid


def history_mask(histories: Sequence[Sequence[int]], n_items: int) -> np.ndarray:
    """Boolean (batch, n_items): True where the item is in that user's history."""
    mask = np.zeros((len(histories), n_items), dtype=bool)
    mask[_flat(histories)] = True
    return mask


def target_ranks(
    scores: np.ndarray, histories: Sequence[Sequence[int]], targets: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per user: items strictly above the target, items tied with it (target included), and
    whether the target can be ranked at all (not masked). History items are excluded."""
    scores = np.asarray(scores)
    tgt = _check(scores.shape, histories, targets)
    n_users, n_items = scores.shape
    mask = history_mask(histories, n_items)
    valid = ~mask[np.arange(n_users), tgt]
    target_score = scores[np.arange(n_users), tgt][:, None]
    open_ = ~mask
    greater = ((scores > target_score) & open_).sum(axis=1)
    tied = ((scores == target_score) & open_).sum(axis=1)
    return greater, np.maximum(tied, 1), valid


def full_ranking_metrics(
    scores: np.ndarray | sp.csr_matrix,
    histories: Sequence[Sequence[int]],
    targets: Sequence[int],
    ks: Iterable[int] = DEFAULT_KS,
) -> dict[str, float]:
    """Mean NDCG@K, Recall@K and MRR@K over users, history masked, ties at expected value."""
    if sp.issparse(scores):
        return metrics_from_ranks(*sparse_target_ranks(scores, histories, targets), ks)
    return metrics_from_ranks(*target_ranks(scores, histories, targets), ks)


def metrics_from_ranks(
    greater: np.ndarray, tied: np.ndarray, valid: np.ndarray, ks: Iterable[int] = DEFAULT_KS
) -> dict[str, float]:
    """The mean metrics of per-user ranks (see target_ranks), e.g. concatenated batches: with
    `g` items above the target and `t` tied, each metric averaged over positions g+1 .. g+t."""
    ks = list(ks)
    k_max = max(ks)
    per_rank = {
        "recall": [1.0] * k_max,
        "ndcg": [gain(r) for r in range(1, k_max + 1)],
        "mrr": [1.0 / r for r in range(1, k_max + 1)],
    }
    cum = {name: np.concatenate([[0.0], np.cumsum(v)]) for name, v in per_rank.items()}
    out: dict[str, float] = {}
    n = len(greater)
    for k in ks:
        hi = np.minimum(greater + tied, k)
        lo = np.minimum(greater, k)
        for name, c in cum.items():
            # Sum of the metric over the tied positions g+1..g+t that fall within the top k.
            per_user = np.where(valid, (c[hi] - c[lo]) / tied, 0.0)
            out[f"{name}@{k}"] = float(per_user.sum() / n) if n else 0.0
    return out


# ---------------------------------------------------------------------- output quality


def position_bias(top_positions: Sequence[int | None], n: int) -> dict[str, object]:
    """Where the top pick sat among the candidates as the prompt listed them (0-based; None: it
    was not a candidate): the share at each position, the share at the first, and the
    normalised entropy (1 = spread evenly over the N positions, 0 = always the same one)."""
    placed = [p for p in top_positions if p is not None and 0 <= p < n]
    if not placed or n < 1:
        return {"share": [], "first_rate": None, "normalized_entropy": None, "n": 0}
    counts = [0] * n
    for p in placed:
        counts[p] += 1
    share = [c / len(placed) for c in counts]
    entropy = -sum(s * math.log(s) for s in share if s > 0)
    return {
        "share": [round(s, 4) for s in share],
        "first_rate": share[0],
        "normalized_entropy": entropy / math.log(n) if n > 1 else 0.0,
        "n": len(placed),
    }


def ratio(numerator: float, denominator: float) -> float | None:
    """A rate, None (not 0) when there is nothing to divide by: 'no outputs' is not 'all valid'."""
    return numerator / denominator if denominator else None


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None
