"""The query-set protocol, beside leave-one-out: text queries, each with the catalog items that
are relevant to it (several per query), scored per retrieval channel and per LM mode.

A suite (``eval/zh-shop.yaml``)::

    name: zh-shop
    dataset: {format: queries, catalog: zh-shop, queries: zh-shop}   # packaged, or file paths
    split: test                    # the queries' own split: choices are made on validation
    settings: {embedding_model: multilingual-e5-small}
    channels: [dense, lexical, fused]
    candidates: 20                 # what the LM cells re-rank: the content retriever's top N
    ks: [5, 10]
    cells: [{mode: rank}, {mode: rank, template: rank_brief}]
    thresholds: [{metric: ndcg@10, min: 0.5, cells: channel/fused}]

Metrics, per query then averaged (genrec.evaluation.metrics.relevant_metrics): Recall@K =
relevant items in the top K / min(K, number relevant) (so a query with 50 relevant items can
reach 1.0), NDCG@K with binary gains over the same ideal. Cells are ``channel/<name>`` (the
catalog search alone) and ``<mode>/<template>`` (the Recommender: candidates from fused content
retrieval, re-ranked by the LM); any mode the Recommender knows runs, so a new mode needs no
change here. The catalog goes into its own collection ``eval-<catalog>`` (synced: exactly this
catalog).
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from genrec.data.catalog_files import DATASETS, load_catalog, load_dataset
from genrec.data.item import Item
from genrec.errors import CatalogError, ConfigError, GenrecError
from genrec.evaluation.metrics import relevant_metrics
from genrec.evaluation.suite import known_settings
from genrec.settings import Settings


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QueryDataset(_Strict):
    format: Literal["queries"]
    catalog: str  # a packaged dataset name (zh-shop) or a catalog file
    queries: str  # a packaged query set name (zh-shop) or a JSONL file


class QueryCell(_Strict):
    mode: str
    template: str | None = None

    @property
    def id(self) -> str:
        return f"{self.mode}/{self.template or 'default'}"


class QueryThreshold(_Strict):
    metric: str = Field(pattern=r"^(recall|ndcg)@\d+$|^error_rate$")
    min: float | None = None
    max: float | None = None
    cells: str = "*"


class QuerySuite(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    dataset: QueryDataset
    split: Literal["test", "validation", "all"] = "test"
    settings: dict[str, Any] = Field(default_factory=dict)
    channels: list[Literal["dense", "lexical", "fused"]] = Field(
        default_factory=lambda: ["dense", "lexical", "fused"]
    )
    candidates: int = Field(default=20, ge=1, le=200)
    ks: list[int] = Field(default_factory=lambda: [5, 10], min_length=1)
    cells: list[QueryCell] = Field(default_factory=list)
    concurrency: int = Field(default=4, ge=1, le=64)
    thresholds: list[QueryThreshold] = Field(default_factory=list)
    source: Path | None = Field(default=None, exclude=True)

    @field_validator("settings")
    @classmethod
    def _known(cls, v: dict[str, Any]) -> dict[str, Any]:
        return known_settings(v)


@dataclass(frozen=True)
class Query:
    id: str
    text: str
    split: str
    relevant: frozenset[str]


def is_query_suite(path: str | Path) -> bool:
    """Whether a suite file uses this protocol (``dataset.format: queries``)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False  # load_suite reports it
    return isinstance(data, dict) and (data.get("dataset") or {}).get("format") == "queries"


def load_query_suite(path: str | Path) -> QuerySuite:
    path = Path(path)
    try:
        suite = QuerySuite.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except ValidationError as exc:
        lines = [
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
        raise ConfigError(
            f"{path}: invalid suite\n  " + "\n  ".join(lines), param="suite"
        ) from None
    suite.source = path.resolve()
    return suite


def _resolve(suite: QuerySuite, value: str) -> Path:
    p = Path(os.path.expandvars(os.path.expanduser(value)))
    if not p.is_absolute() and not p.exists() and suite.source is not None:
        for base in (suite.source.parent, suite.source.parent.parent):
            if (base / p).exists():
                return base / p
    return p


def load_catalog_items(suite: QuerySuite) -> list[Item]:
    name = suite.dataset.catalog
    if name in DATASETS:
        return load_dataset(name)
    return load_catalog(_resolve(suite, name), strict=True).items


def read_queries(path: Path, items: set[str]) -> list[Query]:
    """``{"id", "query", "split", "relevant": [...]}`` per line; a bad line or an unknown
    relevant item is an error naming its line."""
    if not path.is_file():
        raise CatalogError(f"query file not found: {path}", param="dataset.queries")
    out = []
    for line, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            doc = json.loads(raw)
            query = Query(
                str(doc["id"]), str(doc["query"]), str(doc.get("split", "test")),
                frozenset(str(i) for i in doc["relevant"]),
            )  # fmt: skip
            if not query.text.strip() or not query.relevant:
                raise ValueError("needs a non-empty query and relevant items")
        except (ValueError, KeyError, TypeError) as exc:
            raise CatalogError(
                f"{path}:{line}: expected {{id, query, split, relevant}} ({exc})",
                param="dataset.queries",
            ) from None
        if unknown := sorted(query.relevant - items):
            raise CatalogError(
                f"{path}:{line}: relevant items not in the catalog: {unknown[:3]}",
                param="dataset.queries",
            )
        out.append(query)
    return out


def load_queries(suite: QuerySuite, items: Sequence[Item]) -> list[Query]:
    name = suite.dataset.queries
    if name == "zh-shop":
        from genrec.datasets import zh_shop_queries

        path = zh_shop_queries()
    else:
        path = _resolve(suite, name)
    queries = read_queries(path, {item.id for item in items})
    chosen = [q for q in queries if suite.split == "all" or q.split == suite.split]
    if not chosen:
        raise CatalogError(f"{path}: no {suite.split} queries", param="split")
    return chosen


# ---------------------------------------------------------------------- metrics


def _mean_rows(rows: list[dict], ks: Sequence[int]) -> dict[str, float]:
    keys = [f"{m}@{k}" for k in ks for m in ("recall", "ndcg")]
    ok = [r for r in rows if "error" not in r]
    metrics = {key: round(sum(r[key] for r in ok) / len(rows), 4) for key in keys}
    metrics["error_rate"] = round((len(rows) - len(ok)) / len(rows), 4) if rows else 0.0
    return metrics


# ---------------------------------------------------------------------- running


def suite_settings(suite: QuerySuite, settings: Settings) -> Settings:
    # every channel needs the lexical index, whatever the catalog's scripts
    return settings.model_copy(update={"lexical": "on", **suite.settings})


def open_query_index(suite: QuerySuite, settings: Settings, items: Sequence[Item]) -> Any:
    from genrec.index import CatalogIndex

    # named for the catalog, so the validation and test suites share one embedded copy
    index = CatalogIndex(settings, f"eval-{Path(suite.dataset.catalog).stem}")
    index.sync(list(items), progress=False, source=f"eval:{suite.name}")
    return index


def channel_rows(index: Any, queries: Sequence[Query], channel: str, depth: int, ks) -> list:
    rows = []
    for q in queries:
        t0 = time.perf_counter()
        ranked = [h.item.id for h in index.search(q.text, k=depth, channel=channel)]  # type: ignore[arg-type]
        rows.append(
            {
                "query": q.id,
                "ranked": ranked,
                "ms": round((time.perf_counter() - t0) * 1000, 2),
                **relevant_metrics(ranked, q.relevant, ks),
            }
        )
    return rows


async def cell_rows(rec: Any, cell: QueryCell, queries: Sequence[Query], suite: QuerySuite):
    from genrec.schema import RecommendRequest

    k = max(suite.ks)
    requests = [
        RecommendRequest(
            query=q.text, k=k, candidates=suite.candidates, mode=cell.mode, template=cell.template
        )
        for q in queries
    ]
    results = await rec.recommend_many(requests, concurrency=suite.concurrency)
    rows = []
    for q, res in zip(queries, results, strict=True):
        if isinstance(res, GenrecError):
            rows.append({"query": q.id, "error": res.message})
            continue
        ranked = [it.id for it in res.items]
        rows.append(
            {
                "query": q.id,
                "ranked": ranked,
                "ms": res.timings.total_ms,
                **relevant_metrics(ranked, q.relevant, suite.ks),
            }
        )
    return rows


async def run_query_suite(
    suite: QuerySuite,
    settings: Settings,
    out: Path,
    *,
    engine: Any = None,
    tokenizer: Any = None,
    index: Any = None,
    limit: int | None = None,
) -> dict:
    """Every channel, then every LM cell; writes ``results.json`` and ``report.md`` to ``out``
    (atomically) and returns the results document. ``engine`` / ``tokenizer`` / ``index``:
    ones already running or open (an index must hold the suite's catalog)."""
    from genrec.recommender import Recommender
    from genrec.retrieval.registry import content_only

    settings = suite_settings(suite, settings)
    for cell in suite.cells:  # bad cells fail before any work
        from genrec.modes import MODES

        if cell.mode not in MODES:
            raise ConfigError(f"cells: unknown mode {cell.mode!r} ({sorted(MODES)})", param="cells")
    items = load_catalog_items(suite)
    queries = load_queries(suite, items)[:limit]
    t0 = time.perf_counter()
    if index is None:
        index = await asyncio.to_thread(open_query_index, suite, settings, items)
    depth = max(max(suite.ks), suite.candidates)
    cells: dict[str, list[dict]] = {}
    for channel in suite.channels:
        rows = await asyncio.to_thread(channel_rows, index, queries, channel, depth, suite.ks)
        cells[f"channel/{channel}"] = rows
    if suite.cells:
        async with Recommender(
            settings,
            index=index,
            engine=engine,
            tokenizer=tokenizer,
            retrievers=content_only(index),
        ) as rec:
            for cell in suite.cells:
                cells[cell.id] = await cell_rows(rec, cell, queries, suite)
    doc = {
        "suite": suite.name,
        "protocol": "queries",
        "split": suite.split,
        "queries": len(queries),
        "catalog_items": len(items),
        "embedding_model": index.embedder.model_id,
        "candidates": suite.candidates,
        "ks": suite.ks,
        "seconds": round(time.perf_counter() - t0, 1),
        "cells": [
            {"id": cid, "metrics": _mean_rows(rows, suite.ks), "per_query": rows}
            for cid, rows in cells.items()
        ],
    }
    doc["thresholds"] = check_query_thresholds(suite, doc)
    write_results(doc, out)
    return doc


def check_query_thresholds(suite: QuerySuite, doc: dict) -> list[dict]:
    out = []
    for t in suite.thresholds:
        for cell in doc["cells"]:
            if not fnmatch.fnmatchcase(cell["id"], t.cells):
                continue
            value = cell["metrics"].get(t.metric)
            passed = value is not None and (t.min is None or value >= t.min)
            passed = passed and (t.max is None or value <= t.max)
            bound = f">= {t.min}" if t.min is not None else f"<= {t.max}"
            out.append(
                {"metric": t.metric, "cell": cell["id"], "value": value, "bound": bound,
                 "passed": passed}
            )  # fmt: skip
    return out


def report_markdown(doc: dict) -> str:
    keys = [f"{m}@{k}" for k in doc["ks"] for m in ("recall", "ndcg")]
    lines = [
        f"# {doc['suite']}: {doc['queries']} {doc['split']} queries, {doc['catalog_items']} items",
        "",
        f"Embedding model {doc['embedding_model']}; LM cells re-rank the fused top "
        f"{doc['candidates']}.",
        "",
        "| cell | " + " | ".join(keys) + " | errors |",
        "|---" * (len(keys) + 2) + "|",
    ]
    for cell in doc["cells"]:
        m = cell["metrics"]
        vals = " | ".join(f"{m[k]:.4f}" for k in keys)
        lines.append(f"| {cell['id']} | {vals} | {m['error_rate']:.2f} |")
    return "\n".join(lines) + "\n"


def write_results(doc: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("results.json", json.dumps(doc, indent=1, ensure_ascii=False) + "\n"),
        ("report.md", report_markdown(doc)),
    ):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out / name)
