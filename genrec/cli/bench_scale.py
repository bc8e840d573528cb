"""`genrec bench scale`: genrec at a catalog size of your choice (genrec.bench.scale), as JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from genrec.cli.common import (
    ConfigOption,
    handles_errors,
    load_settings,
    print_json,
    stdout_to_stderr,
)

WorkOption = typer.Option(
    Path("scale-bench"), "--work", help="Folder for the data files and per-step logs."
)


DataOption = typer.Option(
    None,
    "--data",
    help="Use catalog.jsonl and log.csv from this folder (e.g. one written by "
    "genrec.bench.synthetic) instead of generating them; give --items to match.",
)


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


@handles_errors
def bench_scale_command(
    items: int = typer.Option(300_000, "--items", min=100, help="Catalog items."),
    users: int = typer.Option(100_000, "--users", min=10, help="Users in the log."),
    events: int = typer.Option(3_000_000, "--events", min=100, help="Events in the log."),
    seed: int = typer.Option(0, "--seed", help="The same sizes and seed write the same data."),
    models: str = typer.Option(
        "itemknn,sasrec", "--models", help="Retrievers to train (comma-separated); '' for none."
    ),
    work: Path = WorkOption,
    data: Path | None = DataOption,
    collection: str | None = typer.Option(
        None, "--collection", help="Collection to fill (default: scale-ITEMS-sSEED)."
    ),
    reuse: bool = typer.Option(
        False,
        "--reuse",
        help="Keep a collection that already holds the catalog, and its trained retrievers.",
    ),
    standin: bool = typer.Option(
        False,
        "--standin-vectors",
        help="Ingest stand-in vectors (the real model's topic embeddings plus noise): minutes "
        "instead of hours at 300k items; for latency only (genrec.bench.standin).",
    ),
    sasrec_seconds: float = typer.Option(
        600.0, "--sasrec-seconds", min=1, help="SASRec's time budget (genrec train --max-seconds)."
    ),
    retrievers: str = typer.Option(
        "auto", "--retrievers", help="Retrievers to time (comma-separated); auto = all served."
    ),
    requests: int = typer.Option(200, "--requests", min=1, help="Timed requests per cell."),
    concurrency: Annotated[
        list[int] | None, typer.Option("--concurrency", help="Repeatable; default 1 and 8.")
    ] = None,
    rank: bool = typer.Option(
        True, "--rank/--no-rank", help="Time rank requests against ML-100K (starts the LM)."
    ),
    rank_requests: int = typer.Option(30, "--rank-requests", min=1),
    config: Path | None = ConfigOption,
) -> None:
    """Generate a synthetic catalog and log, ingest and train them (each a subprocess: seconds and
    peak RSS), time retrieval per retriever with and without a filter at concurrency 1 and 8 (in a
    fresh process: its RSS is a replica's retrieval memory), and a rank request against the same
    request on ML-100K. Prints one JSON document; progress on stderr. Set GENREC_HOME to a home
    of its own: the collection and its bundle are written there."""
    from genrec.bench.scale import ScaleOptions, run_scale

    settings = load_settings(config)
    options = ScaleOptions(
        items=items,
        users=users,
        events=events,
        seed=seed,
        models=_names(models),
        work=work,
        data=data,
        collection=collection,
        reuse=reuse,
        standin=standin,
        sasrec_seconds=sasrec_seconds,
        retrievers=_names(retrievers) or ["auto"],
        requests=requests,
        concurrency=concurrency or [1, 8],
        rank=rank,
        rank_requests=rank_requests,
    )
    with stdout_to_stderr():
        doc = run_scale(settings, options, lambda line: typer.echo(line, err=True))
    print_json(doc)
