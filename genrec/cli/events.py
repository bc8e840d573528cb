"""`genrec events import|export` and `genrec bench events`."""

from __future__ import annotations

from pathlib import Path

import typer

from genrec.cli.common import (
    ConfigOption,
    handles_errors,
    load_settings,
    print_json,
    stdout_to_stderr,
)

MAX_SHOWN = 10  # rejected rows printed on stderr; all are counted
IMPORT_BATCH = 1000
FileArgument = typer.Argument(
    ..., help="An interaction log, as `genrec train` reads it, or an export."
)
OutArgument = typer.Argument(..., help="The file to write (replaced atomically).")


def register(app: typer.Typer, bench: typer.Typer) -> None:
    events = typer.Typer(no_args_is_help=True, help="The event store: import and export events.")
    app.add_typer(events, name="events")
    events.command("import")(import_command)
    events.command("export")(export_command)
    bench.command("events")(bench_events_command)


def _store_and_catalog(config: Path | None, collection: str | None):  # noqa: ANN202
    from genrec.events import open_event_store
    from genrec.ingest import open_catalog

    settings = load_settings(config)
    index = open_catalog(
        settings, collection or settings.collection, notice=lambda m: typer.echo(m, err=True)
    )
    return settings, open_event_store(settings), index


@handles_errors
def import_command(
    file: Path = FileArgument,
    fmt: str | None = typer.Option(
        None, "--format", help="movielens | ml-100k | csv | jsonl (default: from the path)."
    ),
    collection: str | None = typer.Option(None, help="The catalog collection (default: settings)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
    config: Path | None = ConfigOption,
) -> None:
    """Load a log into the event store (GENREC_EVENTS_URL; SQLite under GENREC_HOME by default).
    Each row is checked like a POST /v1/events event; importing a file twice adds nothing."""
    from genrec.events import record_events
    from genrec.events.files import read_event_file

    settings, store, index = _store_and_catalog(config, collection)
    with store:
        docs, unreadable = read_event_file(file, fmt)
        accepted = duplicates = 0
        rejected: list[str] = []
        for start in range(0, len(docs), IMPORT_BATCH):
            batch = docs[start : start + IMPORT_BATCH]
            result = record_events(store, index, batch, max_batch=IMPORT_BATCH)
            accepted += result.accepted
            duplicates += result.duplicates
            rejected += [
                f"row {start + r.index + 1}: {r.param}: {r.message}" for r in result.rejected
            ]
    for line in (unreadable + rejected)[:MAX_SHOWN]:
        typer.echo(f"skipped: {line}", err=True)
    if len(unreadable) + len(rejected) > MAX_SHOWN:
        typer.echo(f"... and {len(unreadable) + len(rejected) - MAX_SHOWN} more", err=True)
    doc = {
        "file": str(file),
        "collection": index.name,
        "store": store.location,
        "read": len(docs),
        "accepted": accepted,
        "duplicates": duplicates,
        "rejected": len(rejected),
        "unreadable": len(unreadable),
    }
    if json_out:
        print_json(doc)
    else:
        typer.echo(
            f"imported {accepted} events into {index.name} ({duplicates} already there, "
            f"{len(rejected) + len(unreadable)} skipped)"
        )


@handles_errors
def export_command(
    out: Path = OutArgument,
    fmt: str | None = typer.Option(None, "--format", help="csv | jsonl (default: from the path)."),
    collection: str | None = typer.Option(None, help="The catalog collection (default: settings)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
    config: Path | None = ConfigOption,
) -> None:
    """Write the collection's events, oldest first, as a log `genrec train` reads."""
    from genrec.events import open_event_store
    from genrec.events.files import write_event_file

    settings = load_settings(config)
    name = collection or settings.collection
    fmt = fmt or ("jsonl" if out.suffix.lower() in (".jsonl", ".ndjson") else "csv")
    with open_event_store(settings) as store:
        n = write_event_file(store.scan(name), out, fmt)
    if json_out:
        print_json({"file": str(out), "format": fmt, "collection": name, "events": n})
    else:
        typer.echo(f"wrote {n} events of {name} to {out}")


@handles_errors
def bench_events_command(
    events: int = typer.Option(1_000_000, min=1000, help="Events stored before the lookups."),
    users: int = typer.Option(10_000, min=10, help="Users they belong to."),
    batches: int = typer.Option(50, min=1, help="Batches of 100 events timed for ingestion."),
    lookups: int = typer.Option(2000, min=10, help="History lookups timed."),
    requests: int = typer.Option(
        20, min=0, help="Recommendations timed per variant (user_id vs explicit history); 0: none."
    ),
    url: str | None = typer.Option(
        None, help="An event store URL to bench (default: a fresh SQLite file in a temp folder)."
    ),
    config: Path | None = ConfigOption,
) -> None:
    """Event ingestion (events/s in batches of 100, through the same checks as POST /v1/events),
    history lookup p50/p99 at EVENTS stored events, and the latency a user_id request adds over
    the same request with an explicit history. JSON on stdout, progress on stderr."""
    import asyncio

    from genrec.bench.events import run_bench

    settings = load_settings(config)
    with stdout_to_stderr():  # vLLM logs to stdout; --json promises one document there
        doc = asyncio.run(
            run_bench(
                settings,
                events=events,
                users=users,
                batches=batches,
                lookups=lookups,
                requests=requests,
                url=url,
                say=lambda m: typer.echo(m, err=True),
            )
        )
    print_json(doc)
