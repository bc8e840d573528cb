"""`genrec ingest`, `genrec search` and `genrec bench index`: the catalog from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from genrec.cli.common import ConfigOption, handles_errors, load_settings, print_json
from genrec.errors import CatalogError, InvalidRequest
from genrec.index import IngestReport, SearchHit

MAX_SHOWN_ERRORS = 20


def register(app: typer.Typer, bench: typer.Typer) -> None:
    app.command("ingest")(ingest_command)
    app.command("search")(search_command)
    bench.command("index")(bench_index_command)


@handles_errors
def ingest_command(
    source: str | None = typer.Argument(
        None, help="Catalog file (.jsonl, .csv, .tsv) or MovieLens folder."
    ),
    dataset: str | None = typer.Option(
        None, "--dataset", help="A packaged dataset instead of SOURCE: ml-100k, zh-shop."
    ),
    collection: str | None = typer.Option(
        None, "--collection", help="Chroma collection (default: settings.collection)."
    ),
    fmt: str | None = typer.Option(
        None, "--format", help="jsonl | csv | movielens (default: from the name)."
    ),
    mapping: Annotated[
        list[str] | None,
        typer.Option("--map", help="Rename source fields: id=movieId,title=name (repeatable)."),
    ] = None,
    strict: bool = typer.Option(False, "--strict", help="Any bad row is fatal; nothing written."),
    prune: bool = typer.Option(
        False, "--prune", help="Also delete items that are no longer in the source."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON document."),
    config: Path | None = ConfigOption,
) -> None:
    """Load a catalog and embed it into a Chroma collection (idempotent: unchanged items are
    skipped, changed ones updated). Bad rows are reported with line numbers and skipped."""
    from genrec.data.catalog_files import parse_mapping
    from genrec.index import CatalogIndex
    from genrec.ingest import ingest

    if (source is None) == (dataset is None):
        raise CatalogError("give a catalog SOURCE (file or folder) or --dataset ml-100k, not both")
    settings = load_settings(config)
    index = CatalogIndex(settings, collection)
    held = index.metadata.get("genrec_source")
    report = ingest(
        settings,
        source,
        dataset=dataset,
        fmt=fmt,
        mapping=parse_mapping(mapping or []),
        strict=strict,
        prune=prune,
        index=index,
    )
    if held and held != report.source and not prune:
        typer.echo(
            f"warning: collection {index.name!r} also holds items from {held}; use "
            f"--collection NAME for a separate catalog, or --prune to replace it",
            err=True,
        )
    _report_bad_rows(report)
    for warning in report.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if as_json:
        print_json(
            {**report.model_dump(), "written": report.written, "items_per_s": report.items_per_s}
        )
        return
    typer.echo(
        f"{report.total} items from {report.source} in collection {report.collection!r}: "
        f"{report.added} added, {report.updated} updated, {report.unchanged} unchanged"
        + (f", {report.removed} removed" if report.removed else "")
        + f" ({report.seconds:.1f} s); embedded with {index.embedder.model_id}"
        + ("; lexical channel on" if report.lexical else "")
    )


def _report_bad_rows(report: IngestReport) -> None:
    if not report.errors:
        return
    typer.echo(
        f"warning: {len(report.errors)} bad row(s) in {report.source} skipped "
        f"(--strict makes them fatal):",
        err=True,
    )
    for line in report.errors[:MAX_SHOWN_ERRORS]:
        typer.echo(f"  {line}", err=True)
    if len(report.errors) > MAX_SHOWN_ERRORS:
        typer.echo(f"  ... and {len(report.errors) - MAX_SHOWN_ERRORS} more", err=True)


@handles_errors
def search_command(
    text: str | None = typer.Argument(None, help="What to look for, in words."),
    history: Annotated[
        list[str] | None,
        typer.Option(
            "--history", help="An item ID or exact title the user liked, oldest first (repeat)."
        ),
    ] = None,
    k: int = typer.Option(10, "--k", min=1, help="How many items."),
    where: str | None = typer.Option(
        None, "--where", help='Chroma metadata filter as JSON, e.g. \'{"year": {"$lt": 1980}}\'.'
    ),
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="An item ID never to return (repeat)."),
    ] = None,
    collection: str | None = typer.Option(None, "--collection", help="Chroma collection."),
    channel: str = typer.Option(
        "fused", "--channel", help="fused | dense | lexical (lexical: collections that have it)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON document."),
    config: Path | None = ConfigOption,
) -> None:
    """Nearest catalog items to a text and/or a history. The default collection is ingested from
    the default dataset first if it is not there yet. The collection's own embedding model
    searches it; with a lexical index (Chinese catalogs) text matches are fused with BM25."""
    from genrec.ingest import open_catalog

    settings = load_settings(config)
    filters = _parse_where(where)
    index = open_catalog(settings, collection, notice=lambda line: typer.echo(line, err=True))
    history = history or []
    if text and (warning := index.language_warning(text)):
        typer.echo(f"warning: {warning}", err=True)
    hits = index.search(
        text,
        history=history,
        k=k,
        where=filters,
        exclude=exclude or [],
        channel=channel,  # type: ignore[arg-type]
    )
    if as_json:
        print_json(
            {
                "collection": index.name,
                "query": text,
                "history": list(history),
                "k": k,
                "where": filters,
                "items": [_hit_json(rank, hit) for rank, hit in enumerate(hits, start=1)],
            }
        )
        return
    if not hits:
        typer.echo("no items matched", err=True)
    for rank, hit in enumerate(hits, start=1):
        item = hit.item
        year = item.attributes.get("year")
        title = f"{item.title} ({year})" if year else item.title
        typer.echo(f"{rank:3d}  {hit.score:.3f}  {item.id:>8}  {title}  [{', '.join(item.tags)}]")


def _parse_where(where: str | None) -> dict | None:
    if where is None:
        return None
    try:
        parsed = json.loads(where)
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"--where is not valid JSON: {exc.msg}", param="where") from exc
    if not isinstance(parsed, dict):
        raise InvalidRequest("--where must be a JSON object", param="where")
    return parsed


def _hit_json(rank: int, hit: SearchHit) -> dict:
    return {"rank": rank, "score": round(hit.score, 6), **hit.item.model_dump()}


@handles_errors
def bench_index_command(
    data: Annotated[
        Path | None,
        typer.Option("--data", help="MovieLens latest-small folder (default: ../shared/data/...)."),
    ] = None,
    queries: int = typer.Option(200, "--queries", min=10, help="Searches of each kind."),
    zh_shop: bool = typer.Option(
        True, "--zh-shop/--no-zh-shop", help="Also the multilingual embedder + lexical channel."
    ),
    config: Path | None = ConfigOption,
) -> None:
    """Ingest ml-latest-small into a fresh temporary collection (items/s, end to end: load,
    model load, embed, write) and time top-20 text and history searches (p50/p99); then the
    packaged Chinese catalog with multilingual-e5-small and the lexical channel (ingest, BM25
    build, search per channel). JSON."""
    from genrec.bench.index import run_index_bench
    from genrec.bench.index_zh import run_zh_bench

    settings = load_settings(config)
    folder = data or _default_latest_small()
    typer.echo(f"bench index: {folder}", err=True)
    doc = run_index_bench(settings, folder, queries=queries)
    if zh_shop:
        typer.echo("bench index: zh-shop (multilingual-e5-small + lexical)", err=True)
        doc["zh_shop"] = run_zh_bench(settings, queries=queries)
    print_json(doc)


def _default_latest_small() -> Path:
    here = Path(__file__).resolve().parents[2]
    for base in (Path.cwd(), here):
        candidate = base.parent / "shared" / "data" / "ml-latest-small"
        if (candidate / "movies.csv").is_file():
            return candidate
    raise CatalogError(
        "ml-latest-small not found in ../shared/data; pass --data PATH to a folder with movies.csv"
    )
