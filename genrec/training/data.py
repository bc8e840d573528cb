"""From an interaction log to what the models train on: per-user item-index sequences.

Items are indexed in the order of the catalog's IDs (only items that occur in the log and in the
catalog get an index; the others are served by content retrieval). Interactions on items the
catalog does not have are counted and reported, never silently dropped. Users are ordered by
first appearance; each user's items by timestamp (ties keep the log's order).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from genrec.catalog import id_key
from genrec.errors import CatalogError
from genrec.evaluation.splits import Interaction


@dataclass
class TrainingData:
    item_ids: list[str]  # index -> catalog ID
    users: list[str]
    sequences: list[list[int]]  # per user, oldest first
    stats: dict = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def index_of(self) -> dict[str, int]:
        return {item_id: i for i, item_id in enumerate(self.item_ids)}

    def fingerprint(self) -> str:
        """A digest of exactly what is trained on (users, order, items)."""
        h = hashlib.sha256()
        h.update(json.dumps(self.item_ids).encode())
        for user, seq in zip(self.users, self.sequences, strict=True):
            h.update(f"{user}\0{','.join(map(str, seq))}\n".encode())
        return h.hexdigest()[:16]

    def holdout(self) -> tuple[list[list[int]], list[list[int]], list[int]]:
        """Leave-one-out for choices: (training sequences: all but each user's last item,
        validation histories (the same), validation targets: each user's last item). Users
        with a single item train nothing and are not validated."""
        train, targets = [], []
        for seq in self.sequences:
            if len(seq) >= 2:
                train.append(seq[:-1])
                targets.append(seq[-1])
        return train, train, targets


def sequences_from_log(interactions: Iterable[Interaction]) -> dict[str, list[str]]:
    """Per user (first appearance order), item IDs by timestamp; ties keep the log's order."""
    rows: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    for order, x in enumerate(interactions):
        rows[x.user].append((x.timestamp, order, x.item))
    return {user: [item for _, _, item in sorted(r)] for user, r in rows.items()}


def build(
    sequences: Mapping[str, Sequence[str]], catalog_ids: Iterable[str], *, source: str = ""
) -> TrainingData:
    """Index the sequences against the catalog. CatalogError when nothing is left to learn."""
    catalog = set(catalog_ids)
    used = {item for seq in sequences.values() for item in seq}
    unknown = used - catalog
    item_ids = sorted(used & catalog, key=id_key)
    index = {item_id: i for i, item_id in enumerate(item_ids)}
    users, seqs = [], []
    unknown_events = 0
    for user, items in sequences.items():
        seq = [index[i] for i in items if i in index]
        unknown_events += len(items) - len(seq)
        if seq:
            users.append(user)
            seqs.append(seq)
    stats = {
        "source": source,
        "users": len(users),
        "interactions": sum(len(s) for s in seqs),
        "items": len(item_ids),
        "catalog_items": len(catalog),
        "catalog_items_without_interactions": len(catalog) - len(item_ids),
        "unknown_items": len(unknown),
        "unknown_item_interactions": unknown_events,
        "users_with_one_item": sum(1 for s in seqs if len(s) == 1),
    }
    if unknown:
        stats["unknown_item_examples"] = sorted(unknown, key=id_key)[:5]
    if not any(len(s) >= 2 for s in seqs):
        raise CatalogError(
            f"{source or 'the interaction log'}: no user has two or more interactions on catalog "
            f"items ({stats['unknown_item_interactions']} interactions name items the catalog "
            "does not have); nothing to learn from",
            param="log",
        )
    return TrainingData(item_ids=item_ids, users=users, sequences=seqs, stats=stats)
