"""Evaluation datasets: an interaction log (or ready-made cases) plus the catalog its items live in.

Three sources, all ending in the same `EvalDataset`:
- ``movielens``: a MovieLens folder (``ratings.csv`` + ``movies.csv``, e.g. ml-latest-small);
- ``ml-100k``: MovieLens 100K as shipped in the recbole wheel (``ml-100k.inter``/``.item``), or a
  folder holding those two files;
- ``jsonl``: one ``{"user_id", "history", "target"}`` object per line, with a catalog file.

Interaction logs go through the k-core filter and chronological leave-one-out (splits.py); the
catalog is cut down to the items that survive, so a full ranking is over exactly those items.
Everything here runs before any engine work, so bad input fails fast and cheaply.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genrec.catalog import Item
from genrec.errors import CatalogError
from genrec.evaluation.splits import (
    EvalCase,
    Interaction,
    Split,
    check_enough,
    k_core,
    leave_one_out,
)


@dataclass
class EvalDataset:
    name: str  # short label, used in the Chroma collection name
    source: str  # where it was read from
    items: dict[str, Item]  # the evaluation catalog: only items that survive filtering
    cases: list[EvalCase]  # one per user, in a stable order
    stats: dict = field(default_factory=dict)


def _need_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise CatalogError(f"{what} not found: {path}", param="dataset.path")
    return path


# ---- interaction readers ---------------------------------------------------------------------


def read_movielens_ratings(folder: Path) -> Iterator[Interaction]:
    """``ratings.csv`` (userId,movieId,rating,timestamp); all ratings are kept, as in LlamaRec."""
    path = _need_file(folder / "ratings.csv", "MovieLens ratings file")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"userId", "movieId", "timestamp"} - set(reader.fieldnames or ())
        if missing:
            raise CatalogError(f"{path}: missing columns {sorted(missing)}", param="dataset.path")
        yield from _interactions(path, enumerate(reader, start=2), "userId", "movieId", "timestamp")


def read_atomic_inter(path: Path) -> Iterator[Interaction]:
    """A recbole atomic ``.inter`` file: tab-separated, typed header (``user_id:token`` ...)."""
    _need_file(path, "interaction file")
    with path.open(encoding="utf-8") as f:
        header = [h.split(":", 1)[0] for h in f.readline().rstrip("\n").split("\t")]
        try:
            iu, ii, it = (header.index(c) for c in ("user_id", "item_id", "timestamp"))
        except ValueError:
            raise CatalogError(
                f"{path}: header needs user_id, item_id and timestamp, has {header}",
                param="dataset.path",
            ) from None
        rows = (
            (line, raw.rstrip("\n").split("\t"))
            for line, raw in enumerate(f, start=2)
            if raw.strip()
        )
        yield from _interactions(path, rows, iu, ii, it)


def _interactions(
    path: Path,
    rows: Iterable[tuple[int, Any]],
    user: str | int,
    item: str | int,
    timestamp: str | int,
) -> Iterator[Interaction]:
    """(line number, row) pairs as interactions, the row indexed by the three column keys; a
    short or unparsable row is an error naming its line."""
    for line, row in rows:
        try:
            yield Interaction(row[user], row[item], float(row[timestamp]))
        except (IndexError, KeyError, TypeError, ValueError) as exc:
            raise CatalogError(f"{path}:{line}: bad row ({exc})", param="dataset.path") from None


def read_cases_jsonl(path: Path) -> list[EvalCase]:
    """Ready-made cases, one JSON object per line: {"user_id", "history": [...], "target"}."""
    _need_file(path, "cases file")
    cases = []
    with path.open(encoding="utf-8") as f:
        for line, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                doc = json.loads(raw)
                user, history, target = doc["user_id"], doc["history"], doc["target"]
                if not isinstance(history, list) or not history:
                    raise ValueError("history must be a non-empty list of item IDs")
            except (ValueError, KeyError, TypeError) as exc:
                raise CatalogError(
                    f"{path}:{line}: expected {{user_id, history, target}} ({exc})",
                    param="dataset.path",
                ) from None
            cases.append(EvalCase(str(user), tuple(str(h) for h in history), str(target)))
    return cases


# ---- catalogs ---------------------------------------------------------------------------------


def _catalog_movielens(folder: Path) -> dict[str, Item]:
    from genrec.catalog import load_movielens_folder

    return {item.id: item for item in load_movielens_folder(folder)}


def _catalog_file(path: Path) -> dict[str, Item]:
    from genrec.catalog import load_catalog

    _need_file(path, "catalog file")
    return {item.id: item for item in load_catalog(path).items}


def ml100k_folder() -> Path:
    from genrec.catalog import ml100k_dir

    return Path(ml100k_dir())


# ---- the one entry point ----------------------------------------------------------------------


def load_eval_dataset(
    fmt: str,
    *,
    path: Path | None,
    catalog: Path | None = None,
    name: str | None = None,
    min_interactions: int = 5,
    split: Split = "test",
) -> EvalDataset:
    """Read, filter and split a dataset; raises CatalogError naming the problem."""
    if fmt == "jsonl":
        if path is None or catalog is None:
            raise CatalogError("a jsonl dataset needs both path and catalog", param="dataset")
        items = _catalog_file(catalog)
        cases = read_cases_jsonl(path)
        unknown = sorted({c.target for c in cases} - items.keys())
        if unknown:
            raise CatalogError(
                f"{path}: {len(unknown)} targets are not in the catalog {catalog} "
                f"(first: {unknown[:3]})",
                param="dataset.catalog",
            )
        check_enough(cases, source=str(path), min_count=1)
        stats = {"users": len(cases), "items": len(items), "cases": len(cases)}
        return EvalDataset(name or path.stem, str(path), items, cases, stats)

    if fmt == "movielens":
        if path is None:
            raise CatalogError("a movielens dataset needs a path", param="dataset.path")
        if not path.is_dir():
            raise CatalogError(f"MovieLens folder not found: {path}", param="dataset.path")
        raw = list(read_movielens_ratings(path))
        all_items = _catalog_movielens(path)
        default_name = path.name
    elif fmt == "ml-100k":
        folder = path or ml100k_folder()
        if not folder.is_dir():
            raise CatalogError(f"ML-100K folder not found: {folder}", param="dataset.path")
        raw = list(read_atomic_inter(folder / "ml-100k.inter"))
        all_items = _catalog_movielens(folder)  # reads the recbole atomic .item file
        default_name = "ml-100k"
    else:
        raise CatalogError(
            f"unknown dataset format {fmt!r}; use movielens, ml-100k or jsonl",
            param="dataset.format",
        )

    kept = k_core(raw, min_interactions)
    cases = leave_one_out(kept, split)
    check_enough(cases, source=str(path or default_name), min_count=min_interactions)
    used = {x.item for x in kept}
    missing = sorted(used - all_items.keys())
    if missing:
        # An item nobody can retrieve would be an unfair miss; say so rather than hide it.
        print(
            f"warning: {len(missing)} rated items are not in the catalog (first: {missing[:3]})",
            file=sys.stderr,
        )
    items = {i: all_items[i] for i in sorted(used & all_items.keys(), key=_id_key)}
    stats = {
        "raw_interactions": len(raw),
        "raw_users": len({x.user for x in raw}),
        "raw_items": len({x.item for x in raw}),
        "interactions": len(kept),
        "users": len({x.user for x in kept}),
        "items": len(used),
        "items_missing_from_catalog": len(missing),
        "cases": len(cases),
        "min_interactions": min_interactions,
        "split": split,
    }
    return EvalDataset(name or default_name, str(path or default_name), items, cases, stats)


def _id_key(item_id: str) -> tuple[int, int | str]:
    # Numeric IDs in numeric order, others after them, so the catalog order is stable and natural.
    return (0, int(item_id)) if item_id.isdigit() else (1, item_id)
