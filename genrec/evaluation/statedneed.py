"""The stated-need protocol: needs people wrote in their own words (MovieLens ``tags.csv``).

Each (user, movie) tag group is a case: the query is that user's tags for the movie (in the order
written, repeats dropped, joined by ", "), the history is what the user rated strictly before the
case's time (the earlier of their first rating and first tag of the movie), oldest first, and the
target is the movie.

No leakage: the retrievers (and ``genrec finetune``) learn only from users who never tagged
anything, so no case's target, and nothing its user did, is ever in training. The taggers'
ratings appear only as the histories of their own cases.

Parts: the tagging users are shuffled with the protocol's seed (in ``id_key`` order first) and the
first ``validation_share`` of them (rounded, at least one) form the validation part, where choices
are made; the report is on the other users' cases. A user's cases are capped at
``max_cases_per_user`` (a seeded sample of them), since one user wrote most of the tags.

Bad rows are skipped and counted, each reason naming the file and field: a movie missing from
``movies.csv``, a user missing from ``ratings.csv``, a case with no rating before it.
"""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from genrec.data.item import id_key
from genrec.errors import CatalogError
from genrec.evaluation.splits import EvalCase, Interaction

Part = Literal["report", "validation"]
TAG_COLUMNS = ("userId", "movieId", "tag", "timestamp")


@dataclass(frozen=True)
class TagGroup:
    user: str
    item: str
    tags: tuple[str, ...]
    time: float  # the first tag's timestamp


@dataclass
class StatedNeed:
    cases: list[EvalCase]  # the asked part's cases, users in id order, each user's by time
    training: dict[str, list[str]]  # the non-tagging users' ratings, oldest first
    stats: dict = field(default_factory=dict)


def read_tags(path: Path) -> list[TagGroup]:
    """The (user, movie) tag groups of a MovieLens tags.csv; a bad row is an error naming it."""
    if not path.is_file():
        raise CatalogError(f"tags file not found: {path}", param="protocol.tags")
    groups: dict[tuple[str, str], tuple[list[str], float]] = {}
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in TAG_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise CatalogError(
                f"{path}: missing columns {missing} (expected {', '.join(TAG_COLUMNS)})",
                param="protocol.tags",
            )
        for row in reader:
            try:
                user, item = row["userId"].strip(), row["movieId"].strip()
                tag, when = (row["tag"] or "").strip(), float(row["timestamp"])
                if not user or not item:
                    raise ValueError("empty userId or movieId")
            except (ValueError, AttributeError) as exc:
                raise CatalogError(
                    f"{path}:{reader.line_num}: bad row ({exc})", param="protocol.tags"
                ) from None
            tags, first = groups.get((user, item), ([], when))
            if tag and tag.casefold() not in {t.casefold() for t in tags}:
                tags.append(tag)
            groups[(user, item)] = (tags, min(first, when))
    return [
        TagGroup(u, i, tuple(tags), when)
        for (u, i), (tags, when) in groups.items()
        if tags  # a group of blank tags states nothing
    ]


def build(
    interactions: list[Interaction],
    catalog: set[str],
    tags_path: Path,
    ratings_path: Path,
    *,
    part: Part,
    seed: int,
    validation_share: float,
    max_cases_per_user: int | None,
) -> StatedNeed:
    """The asked part's cases and the training sequences; skips counted by reason."""
    groups = read_tags(tags_path)
    movies = ratings_path.parent / "movies.csv"
    per_user: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    for order, x in enumerate(interactions):
        per_user[x.user].append((x.timestamp, order, x.item))
    for rows in per_user.values():
        rows.sort()
    taggers = {g.user for g in groups}
    skipped: dict[str, int] = {}

    def skip(reason: str) -> None:
        skipped[reason] = skipped.get(reason, 0) + 1

    cases: dict[str, list[EvalCase]] = defaultdict(list)
    for g in sorted(groups, key=lambda g: (id_key(g.user), g.time, id_key(g.item))):
        if g.item not in catalog:
            skip(f"{tags_path.name}: movieId not in {movies.name}")
            continue
        if g.user not in per_user:
            skip(f"{tags_path.name}: userId not in {ratings_path.name}")
            continue
        rows = per_user[g.user]
        rated = [t for t, _, item in rows if item == g.item]
        when = min([g.time, *rated])
        history = tuple(item for t, _, item in rows if t < when and item != g.item)
        if not history:
            skip(f"{ratings_path.name}: no rating by the userId before the case")
            continue
        cases[g.user].append(
            EvalCase(f"{g.user}:{g.item}", history, g.item, query=", ".join(g.tags), user=g.user)
        )

    users = sorted(cases, key=id_key)
    shuffled = list(users)
    random.Random(seed).shuffle(shuffled)
    n_val = max(1, round(validation_share * len(users))) if users else 0
    validation = set(shuffled[:n_val])
    capped = 0
    chosen: list[EvalCase] = []
    for user in users:
        mine = cases[user]
        if max_cases_per_user is not None and len(mine) > max_cases_per_user:
            keep = set(random.Random(f"{seed}:{user}").sample(range(len(mine)), max_cases_per_user))
            capped += len(mine) - len(keep)
            mine = [c for i, c in enumerate(mine) if i in keep]
        cases[user] = mine
        if (user in validation) == (part == "validation"):
            chosen += mine
    training = {
        user: [item for _, _, item in rows]
        for user, rows in per_user.items()
        if user not in taggers
    }
    stats = {
        "tag_groups": len(groups),
        "tagging_users": len(taggers),
        "skipped": dict(sorted(skipped.items())),
        "capped_away": capped,
        "max_cases_per_user": max_cases_per_user,
        "cases_total": sum(len(v) for v in cases.values()),
        "validation_users": sorted(validation, key=id_key),
        "part": part,
        "part_users": len({c.person for c in chosen}),
        "training_users": len(training),
        "training_interactions": sum(len(v) for v in training.values()),
    }
    return StatedNeed(chosen, training, stats)
