"""`genrec train`: learn retrievers from an interaction log for a catalog collection."""

from __future__ import annotations

from pathlib import Path

import typer

from genrec.cli.common import ConfigOption, handles_errors, load_settings, print_json

MAX_SHOWN = 10  # bad rows printed on stderr; all are counted
LogArgument = typer.Argument(
    None,
    help="The interaction log: a MovieLens folder, ML-100K's .inter file or folder, or a "
    "CSV/JSONL of user_id, item_id, timestamp[, rating]. Default: the packaged ML-100K "
    "(for the default collection).",
)


def register(app: typer.Typer, bench: typer.Typer) -> None:
    app.command("train")(train_command)


@handles_errors
def train_command(
    log: Path | None = LogArgument,
    fmt: str | None = typer.Option(
        None, "--format", help="movielens | ml-100k | csv | jsonl (default: from the path)."
    ),
    collection: str | None = typer.Option(None, help="The catalog collection (default: settings)."),
    models: str = typer.Option(
        "itemknn,ease,sasrec", help="Comma-separated: itemknn, ease, sasrec."
    ),
    seed: int = typer.Option(0, help="Seed: the same log and seed train the same models."),
    max_seconds: float | None = typer.Option(
        None, min=1, help="Stop training SASRec at this many seconds (within an epoch)."
    ),
    strict: bool = typer.Option(False, help="Refuse the whole log on its first bad row."),
    events: bool = typer.Option(
        False,
        "--events",
        help="Train on the events recorded in the event store (POST /v1/events, `genrec events "
        "import`; GENREC_EVENTS_URL) for the collection, instead of a log file.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
    config: Path | None = ConfigOption,
) -> None:
    """Train itemknn (co-occurrence), ease (linear autoencoder) and sasrec (sequential)
    retrievers and their hybrid with content retrieval; choices are made on each user's last
    interaction; the best becomes the collection's default retriever. A killed run leaves the
    previous retrievers serving."""
    from genrec.data.interactions import log_file
    from genrec.data.log_columns import LogColumns, read_columns
    from genrec.errors import CatalogError
    from genrec.ingest import DEFAULT_COLLECTION, open_catalog
    from genrec.training import memory
    from genrec.training.data import build_columns
    from genrec.training.train import train_retrievers

    settings = load_settings(config)
    name = collection or settings.collection
    if events and log is not None:
        raise CatalogError("give a log file or --events, not both", param="log")
    if log is None and name != DEFAULT_COLLECTION and not events:
        raise CatalogError(
            f"collection {name!r} needs an interaction log: `genrec train LOG --collection {name}`",
            param="log",
        )
    wanted = [m.strip() for m in models.split(",") if m.strip()]
    index = open_catalog(settings, name, notice=lambda line: typer.echo(line, err=True))
    if events:
        from genrec.events.training import read_store

        read = read_store(settings, name)
        cols = LogColumns.from_interactions(read.source, read.interactions)
        cols.errors, cols.bad_rows = read.errors, len(read.errors)
        del read
    else:
        file, _ = log_file(log, fmt)
        # Reading is the first thing that grows with the log: refuse before it, not during.
        memory.check(
            f"reading {file} ({file.stat().st_size / 1e9 if file.is_file() else 0:.2f} GB)",
            memory.process_bytes() + memory.log_bytes(file),
            memory.budget_bytes(settings),
            hint="split the log or raise the budget",
        )
        cols = read_columns(log, fmt, strict=strict)
    for line in cols.errors[:MAX_SHOWN]:
        typer.echo(f"bad row: {line}", err=True)
    if cols.bad_rows > MAX_SHOWN:
        typer.echo(f"... and {cols.bad_rows - MAX_SHOWN} more bad rows", err=True)
    data = build_columns(cols, index.ids(), source=cols.source)
    data.stats["bad_rows"] = cols.bad_rows
    del cols
    if data.stats["unknown_item_interactions"]:
        typer.echo(
            f"warning: {data.stats['unknown_item_interactions']} interactions name "
            f"{data.stats['unknown_items']} items not in collection {name!r} (e.g. "
            f"{data.stats.get('unknown_item_examples')}); they are not trained on",
            err=True,
        )
    manifest = train_retrievers(
        settings, data, index, models=wanted, seed=seed, max_seconds=max_seconds
    )
    if json_out:
        print_json(manifest)
        return
    typer.echo(f"trained {', '.join(manifest['models'])} for {name} in {manifest['seconds']} s")
    for model, info in manifest["models"].items():
        typer.echo(f"  {model:8s} validation NDCG@10 {info['validation']['ndcg@10']:.4f}")
    typer.echo(f"  content  validation NDCG@10 {manifest['content']['validation']['ndcg@10']:.4f}")
    typer.echo(f"default retriever: {manifest['default']} (version {manifest['version']})")
