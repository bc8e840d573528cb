"""The ``queries`` dataset format: a catalog and a query set, each query a case of the one runner.

A query file holds one JSON object per line::

    {"id": "q1", "query": "我想买夏天穿的男装T恤", "relevant": ["zh0001", ...],
     "split": "test", "history": ["zh0042"]}      # split and history optional

Each query becomes an ``EvalCase`` (keyed by its id): the text as the request's query, the
history (oldest first; may be empty) as what the user has seen, and every relevant item as what
the ranking is scored against (``EvalCase.relevant``; metrics.relevant_metrics). The suite says
which queries run (``protocol.split``: ``test``, ``validation`` or ``all``); everything else -
cells, baselines, CIs, thresholds, reports - is the runner's. ``catalog`` and ``path`` name files
or the packaged ``zh-shop`` set (genrec/datasets). There is no interaction log: nothing is
trained and the popularity baseline has nothing to count (the suite refuses both).

The retrieval baselines score the catalog search on each channel
(genrec.evaluation.retrievers.channel_retrievers): ``fused`` (the content retriever: dense and
BM25 fused, dense alone without a lexical index; what the LM cells re-rank), ``dense`` and, when
the collection has a lexical index, ``lexical``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from genrec.data.catalog_files import load_catalog
from genrec.data.item import Item
from genrec.data.lines import json_records
from genrec.datasets import zh_shop_catalog, zh_shop_queries
from genrec.errors import CatalogError
from genrec.evaluation.splits import EvalCase

# packaged sets: name -> (catalog file, queries file)
PACKAGED: dict[str, tuple[Callable[[], Path], Callable[[], Path]]] = {
    "zh-shop": (zh_shop_catalog, zh_shop_queries),
}


def packaged_file(value: str, part: int) -> Path | None:
    """The packaged catalog (``part`` 0) or query file (1) named ``value``, else None."""
    files = PACKAGED.get(value)
    return files[part]() if files else None


def _query(doc: dict) -> tuple[str, EvalCase]:
    relevant = tuple(str(i) for i in doc["relevant"])
    history = tuple(str(i) for i in doc.get("history") or ())
    text, split = str(doc["query"]), str(doc.get("split", "test"))
    if not text.strip() or not relevant:
        raise ValueError("needs a non-empty query and relevant items")
    return split, EvalCase(str(doc["id"]), history, relevant[0], text, relevant=frozenset(relevant))


def read_queries(path: Path, items: set[str]) -> list[tuple[str, EvalCase]]:
    """Every query of a file as (its split, its case); a bad line, or an item not in the
    catalog, is an error naming its line."""
    if not path.is_file():
        raise CatalogError(f"query file not found: {path}", param="dataset.path")
    out = []
    expected = "{id, query, split, relevant, history}"
    for line, (split, case) in json_records(path, _query, expected=expected, param="dataset.path"):
        if unknown := sorted((case.relevant | set(case.history)) - items):
            raise CatalogError(
                f"{path}:{line}: relevant or history items not in the catalog: {unknown[:3]}",
                param="dataset.path",
            )
        out.append((split, case))
    return out


def load_queries(
    path: Path, catalog: Path, split: str
) -> tuple[dict[str, Item], list[EvalCase], dict]:
    """The catalog (every item: a query may want any of them), the chosen split's cases in file
    order, and their stats."""
    items = {item.id: item for item in load_catalog(catalog, strict=True).items}
    every = read_queries(path, set(items))
    cases = [case for part, case in every if split in ("all", part)]
    if not cases:
        raise CatalogError(f"{path}: no {split} queries", param="protocol.split")
    stats = {
        "users": len(cases),
        "items": len(items),
        "cases": len(cases),
        "queries_in_file": len(every),
        "relevant_per_query": round(sum(len(c.relevant) for c in cases) / len(cases), 2),
        "split": split,
    }
    return items, cases, stats
