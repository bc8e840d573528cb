"""From an interaction log to what the models train on: per-user item-index sequences.

Items are indexed in the order of the catalog's IDs (only items that occur in the log and in the
catalog get an index; the others are served by content retrieval). Interactions on items the
catalog does not have are counted and reported, never silently dropped. Users are ordered by
first appearance; each user's items by timestamp (ties keep the log's order).

The sequences are two arrays (:class:`~genrec.training.sequences.Sequences`), built by sorting
codes with numpy (:func:`build_columns`), never per-row Python objects.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from genrec.data.interactions import Interaction
from genrec.data.item import id_key
from genrec.data.log_columns import LogColumns
from genrec.errors import CatalogError
from genrec.training.sequences import Sequences


@dataclass
class TrainingData:
    item_ids: list[str]  # index -> catalog ID
    users: list[str]
    sequences: Sequences  # per user, oldest first
    stats: dict = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def index_of(self) -> dict[str, int]:
        return {item_id: i for i, item_id in enumerate(self.item_ids)}

    @property
    def n_events(self) -> int:
        return len(self.sequences.items)

    def fingerprint(self) -> str:
        """A digest of exactly what is trained on (users, order, items)."""
        if not hasattr(self, "_fingerprint"):
            h = hashlib.sha256()
            h.update(json.dumps(self.item_ids).encode())
            h.update("\0".join(self.users).encode())
            h.update(self.sequences.indptr.astype("<i8").tobytes())
            h.update(self.sequences.items.astype("<i4").tobytes())
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    def holdout(self) -> tuple[Sequences, Sequences, np.ndarray]:
        """Leave-one-out for choices: (training sequences: all but each user's last item,
        validation histories (the same), validation targets: each user's last item). Users
        with a single item train nothing and are not validated."""
        train, targets, _ = self.sequences.drop_last()
        return train, train, targets


def sequences_from_log(interactions: Iterable[Interaction]) -> dict[str, list[str]]:
    """Per user (first appearance order), item IDs by timestamp; ties keep the log's order."""
    rows: dict[str, list[tuple[float, int, str]]] = {}
    for order, x in enumerate(interactions):
        rows.setdefault(x.user, []).append((x.timestamp, order, x.item))
    return {user: [item for _, _, item in sorted(r)] for user, r in rows.items()}


def build(
    sequences: Mapping[str, Sequence[str]], catalog_ids: Iterable[str], *, source: str = ""
) -> TrainingData:
    """Index ready-made sequences (user -> item IDs, oldest first) against the catalog.
    CatalogError when nothing is left to learn."""
    cols = LogColumns.from_interactions(
        source,
        (
            Interaction(user, item, float(t), None)
            for user, items in sequences.items()
            for t, item in enumerate(items)
        ),
    )
    return build_columns(cols, catalog_ids, source=source)


def build_columns(
    cols: LogColumns, catalog_ids: Iterable[str], *, source: str = ""
) -> TrainingData:
    """Index a log read as columns against the catalog: each user's events sorted by
    timestamp (stable, so ties keep the log's order), users by first appearance."""
    source = source or cols.source
    catalog = set(catalog_ids)
    known = np.fromiter((name in catalog for name in cols.item_names), bool, len(cols.item_names))
    item_ids = sorted((n for n, k in zip(cols.item_names, known, strict=True) if k), key=id_key)
    position = {item_id: i for i, item_id in enumerate(item_ids)}
    code_to_index = np.fromiter(
        (position.get(n, -1) for n in cols.item_names), np.int64, len(cols.item_names)
    )
    index = code_to_index[cols.items]
    on_catalog = index >= 0
    unknown_events = int((~on_catalog).sum())
    unknown_codes = np.flatnonzero(~known & (np.bincount(cols.items, minlength=len(known)) > 0))
    users, times = cols.users[on_catalog], cols.timestamps[on_catalog]
    index = index[on_catalog]
    del on_catalog
    order = np.argsort(times, kind="stable")
    order = order[np.argsort(users[order], kind="stable")]
    counts = np.bincount(users, minlength=len(cols.user_names))
    kept_users = np.flatnonzero(counts)
    indptr = np.zeros(len(kept_users) + 1, dtype=np.int64)
    np.cumsum(counts[kept_users], out=indptr[1:])
    seqs = Sequences(indptr, index[order].astype(np.int32))
    del order, users, times, index
    lengths = seqs.lengths
    stats = {
        "source": source,
        "users": len(kept_users),
        "interactions": int(indptr[-1]),
        "items": len(item_ids),
        "catalog_items": len(catalog),
        "catalog_items_without_interactions": len(catalog) - len(item_ids),
        "unknown_items": len(unknown_codes),
        "unknown_item_interactions": unknown_events,
        "users_with_one_item": int((lengths == 1).sum()),
    }
    if len(unknown_codes):
        names = sorted((cols.item_names[c] for c in unknown_codes), key=id_key)
        stats["unknown_item_examples"] = names[:5]
    if not (lengths >= 2).any():
        raise CatalogError(
            f"{source or 'the interaction log'}: no user has two or more interactions on catalog "
            f"items ({unknown_events} interactions name items the catalog does not have); "
            "nothing to learn from",
            param="log",
        )
    user_names = [cols.user_names[u] for u in kept_users]
    return TrainingData(item_ids=item_ids, users=user_names, sequences=seqs, stats=stats)
