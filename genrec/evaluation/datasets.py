"""Evaluation datasets: an interaction log (or ready-made cases) plus the catalog its items live in.

Four sources, all ending in the same `EvalDataset`:
- ``movielens``: a MovieLens folder (``ratings.csv`` + ``movies.csv``, e.g. ml-latest-small);
- ``ml-100k``: MovieLens 100K as shipped in the recbole wheel (``ml-100k.inter``/``.item``), or a
  folder holding those two files;
- ``jsonl``: one ``{"user_id", "history", "target"}`` object per line, with a catalog file;
- ``queries``: a query set, each query with several relevant items (genrec.evaluation.queryset).

Interaction logs go through the k-core filter and chronological leave-one-out (splits.py); the
catalog is cut down to the items that survive, so a full ranking is over exactly those items.
Everything here runs before any engine work, so bad input fails fast and cheaply.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from genrec.data.catalog_files import load_catalog
from genrec.data.interactions import Interaction, read_log
from genrec.data.item import Item, id_key
from genrec.data.lines import json_records
from genrec.data.movielens import load_movielens_folder, ml100k_dir
from genrec.errors import CatalogError
from genrec.evaluation import queryset, statedneed
from genrec.evaluation.splits import (
    EvalCase,
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
    cases: list[EvalCase]  # one per user (stated-need: per tag group), in a stable order
    stats: dict = field(default_factory=dict)
    # What the retrievers learn from, per user oldest first; None: the cases' histories.
    training: dict[str, list[str]] | None = None

    def training_sequences(self) -> dict[str, list[str]]:
        if self.training is not None:
            return self.training
        return {case.user_id: list(case.history) for case in self.cases}


def _need_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise CatalogError(f"{what} not found: {path}", param="dataset.path")
    return path


# ---- interaction readers ---------------------------------------------------------------------


def read_interactions(path: Path, fmt: str) -> list[Interaction]:
    """A MovieLens ``ratings.csv`` folder or an ML-100K ``.inter`` file, every rating kept (as in
    LlamaRec); the first bad row is an error naming its line (genrec.data.interactions reads
    both)."""
    try:
        return read_log(path, fmt, strict=True).interactions
    except CatalogError as exc:
        raise CatalogError(exc.message, param="dataset.path") from None


def _case(doc: dict) -> EvalCase:
    user, history, target = doc["user_id"], doc["history"], doc["target"]
    if not isinstance(history, list) or not history:
        raise ValueError("history must be a non-empty list of item IDs")
    return EvalCase(str(user), tuple(str(h) for h in history), str(target))


def read_cases_jsonl(path: Path) -> list[EvalCase]:
    """Ready-made cases, one JSON object per line: {"user_id", "history": [...], "target"}."""
    _need_file(path, "cases file")
    expected = "{user_id, history, target}"
    return [c for _, c in json_records(path, _case, expected=expected, param="dataset.path")]


# ---- catalogs ---------------------------------------------------------------------------------


def _catalog_movielens(folder: Path) -> dict[str, Item]:
    return {item.id: item for item in load_movielens_folder(folder)}


def _catalog_file(path: Path) -> dict[str, Item]:
    _need_file(path, "catalog file")
    return {item.id: item for item in load_catalog(path).items}


def ml100k_folder() -> Path:
    return Path(ml100k_dir())


@dataclass(frozen=True)
class NeedOptions:
    """The stated-need protocol's options (genrec.evaluation.statedneed)."""

    tags: Path
    part: statedneed.Part = "report"
    seed: int = 0
    validation_share: float = 0.3
    max_cases_per_user: int | None = 20


def _stated_need(
    raw: list[Interaction],
    items: dict[str, Item],
    folder: Path,
    name: str,
    need: NeedOptions | None,
) -> EvalDataset:
    """Cases from a tags file over the whole catalog (no k-core: a tagged film may be rare)."""
    if need is None:
        raise CatalogError("the stated-need split needs its options", param="protocol")
    built = statedneed.build(
        raw,
        set(items),
        need.tags,
        folder / "ratings.csv",
        part=need.part,
        seed=need.seed,
        validation_share=need.validation_share,
        max_cases_per_user=need.max_cases_per_user,
    )
    for reason, n in built.stats["skipped"].items():
        print(f"warning: stated-need: {n} tag groups skipped ({reason})", file=sys.stderr)
    check_enough(built.cases, source=str(need.tags), min_count=1)
    stats = {
        "raw_interactions": len(raw),
        "users": len({c.person for c in built.cases}),
        "items": len(items),
        "interactions": built.stats["training_interactions"],
        "cases": len(built.cases),
        "split": "stated-need",
        "tags": str(need.tags),
        **built.stats,
    }
    ordered = dict(sorted(items.items(), key=lambda kv: id_key(kv[0])))
    return EvalDataset(f"{name}-need", str(folder), ordered, built.cases, stats, built.training)


# ---- the one entry point ----------------------------------------------------------------------


def load_eval_dataset(
    fmt: str,
    *,
    path: Path | None,
    catalog: Path | None = None,
    name: str | None = None,
    min_interactions: int = 5,
    split: Split = "test",
    need: NeedOptions | None = None,
) -> EvalDataset:
    """Read, filter and split a dataset; raises CatalogError naming the problem."""
    if split == "stated-need" and fmt != "movielens":
        raise CatalogError(
            "the stated-need split reads a MovieLens folder (ratings.csv, movies.csv, tags.csv): "
            f"dataset.format must be movielens, not {fmt}",
            param="dataset.format",
        )
    if fmt == "queries":
        if path is None or catalog is None:
            raise CatalogError("a queries dataset needs both path and catalog", param="dataset")
        items, cases, stats = queryset.load_queries(path, catalog, split)
        label = name or catalog.stem.removesuffix("_queries").replace("_", "-")
        return EvalDataset(label, str(path), items, cases, stats, training={})
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
        raw = read_interactions(path, "movielens")
        all_items = _catalog_movielens(path)
        default_name = path.name
    elif fmt == "ml-100k":
        folder = path or ml100k_folder()
        if not folder.is_dir():
            raise CatalogError(f"ML-100K folder not found: {folder}", param="dataset.path")
        raw = read_interactions(folder / "ml-100k.inter", "ml-100k")
        all_items = _catalog_movielens(folder)  # reads the recbole atomic .item file
        default_name = "ml-100k"
    else:
        raise CatalogError(
            f"unknown dataset format {fmt!r}; use movielens, ml-100k or jsonl",
            param="dataset.format",
        )

    if split == "stated-need":
        return _stated_need(raw, all_items, path, name or default_name, need)
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
    items = {i: all_items[i] for i in sorted(used & all_items.keys(), key=id_key)}
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
