"""The evaluation protocol over an interaction log (LlamaRec's): k-core filter, then chronological
leave-one-out per user.

- k-core: drop users and items with fewer than `min_count` interactions, and repeat until nothing
  changes (dropping an item can push a user under the bar and the other way round).
- leave-one-out: per user, sort by timestamp (ties keep the log's order: the sort is stable); the
  last item is the test target, the second-last the validation target, the rest is history.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from genrec.data.interactions import Interaction
from genrec.errors import CatalogError

Split = Literal["test", "validation", "stated-need", "all"]  # all: a query set's every query
Inputs = Literal["history", "query", "both"]  # what a request carries of a case


@dataclass(frozen=True)
class EvalCase:
    """One request of the evaluation: a user's history (oldest first) and the item to find.

    ``user_id`` keys the case (records, candidate lists): the user where a protocol has one case
    per user, ``user:item`` where it has several (the stated-need protocol), with the user in
    ``user``. ``query`` is the user's own words for the need, carried as the request's query.
    ``relevant``: a query set's several relevant items (``target`` is then the first of them,
    for the views that place one item); empty where the target alone is relevant."""

    user_id: str
    history: tuple[str, ...]
    target: str
    query: str = ""
    user: str | None = None  # the person behind the case when user_id is a case key
    relevant: frozenset[str] = frozenset()

    @property
    def person(self) -> str:
        return self.user or self.user_id

    @property
    def wanted(self) -> str | frozenset[str]:
        """What a ranking is scored against (genrec.evaluation.metrics.ranking_metrics)."""
        return self.relevant or self.target


def k_core(interactions: Sequence[Interaction], min_count: int) -> list[Interaction]:
    """Interactions left after iterating the user/item k-core filter until it is stable."""
    current = list(interactions)
    while True:
        users = Counter(x.user for x in current)
        items = Counter(x.item for x in current)
        kept = [x for x in current if users[x.user] >= min_count and items[x.item] >= min_count]
        if len(kept) == len(current):
            return kept
        current = kept


def leave_one_out(interactions: Iterable[Interaction], split: Split = "test") -> list[EvalCase]:
    """One case per user (in order of first appearance) with enough interactions for `split`.

    test: history = all but the last, target = last. validation: history = all but the last two,
    target = second-last (the test item is never seen). Users too short for the split are skipped.
    """
    per_user: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    for order, x in enumerate(interactions):
        per_user[x.user].append((x.timestamp, order, x.item))
    need = 2 if split == "test" else 3
    cases = []
    for user, rows in per_user.items():
        if len(rows) < need:
            continue
        items = [item for _, _, item in sorted(rows)]  # (timestamp, log order): ties keep order
        if split == "validation":
            items = items[:-1]
        cases.append(EvalCase(user_id=user, history=tuple(items[:-1]), target=items[-1]))
    return cases


def training_counts(cases: Iterable[EvalCase]) -> Counter[str]:
    """How often each item occurs in the training part (the histories) - the popularity baseline.

    Targets are never counted, so no test item leaks into the baseline.
    """
    counts: Counter[str] = Counter()
    for case in cases:
        counts.update(case.history)
    return counts


def check_enough(cases: Sequence[EvalCase], *, source: str, min_count: int) -> None:
    if not cases:
        raise CatalogError(
            f"{source}: no user is left with enough interactions after the {min_count}-core filter "
            "and the leave-one-out split; lower dataset.min_interactions or use a larger dataset",
            param="dataset",
        )
