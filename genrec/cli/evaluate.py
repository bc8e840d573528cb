"""`genrec eval`: offline prompt evaluation over a suite (eval/*.yaml)."""

from __future__ import annotations

import asyncio
import os
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

eval_app = typer.Typer(no_args_is_help=True, help="Offline prompt evaluation (suites in eval/).")


def _prepare(suite_file: Path, config: Path | None, **opts):
    from genrec.errors import ConfigError, InvalidRequest
    from genrec.evaluation.runner import RunOptions, prepare
    from genrec.evaluation.suite import load_suite

    settings = load_settings(config)
    try:
        suite = load_suite(suite_file)
        out = opts.pop("out") or Path("eval-results") / suite.name
        options = RunOptions(out=out, **opts)
        return suite, settings, prepare(suite, settings, options)
    except ConfigError as exc:
        # A wrong suite, path or option is bad input (exit 2), like any other bad request.
        raise InvalidRequest(exc.message, param=exc.param) from None


@eval_app.command("run")
@handles_errors
def run_cmd(
    suite_file: Annotated[Path, typer.Argument(help="The suite, e.g. eval/smoke.yaml.")],
    limit: Annotated[int | None, typer.Option(min=1, help="At most N users.")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Results folder (default: eval-results/SUITE).")
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 when a threshold is missed.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print results.json on stdout.")] = False,
    compare_to: Annotated[
        Path | None, typer.Option("--compare", help="A previous results.json.")
    ] = None,
    data: Annotated[Path | None, typer.Option(help="Dataset path (overrides the suite).")] = None,
    concurrency: Annotated[int | None, typer.Option(min=1)] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="Engine output cache (default: GENREC_HOME/eval-cache).")
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Always ask the engine.")] = False,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Ignore per-request results in --out.")
    ] = False,
    report_only: Annotated[
        bool,
        typer.Option(
            "--report-only", help="Run no requests: report what --out holds (e.g. a partial run)."
        ),
    ] = False,
    config: Path | None = ConfigOption,
) -> None:
    """Run a suite: every template x mode x profile cell, baselines, reports, thresholds."""
    from genrec.evaluation.runner import run

    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    suite, settings, prepared = _prepare(
        suite_file,
        config,
        out=out,
        limit=limit,
        concurrency=concurrency,
        data=data,
        compare_to=compare_to,
        fresh=fresh,
        report_only=report_only,
        cache_dir=None if no_cache else (cache_dir or settings_home(config) / "eval-cache"),
    )
    try:
        with stdout_to_stderr():
            doc = asyncio.run(run(prepared, settings))
    except KeyboardInterrupt:
        typer.echo(
            f"interrupted; finished requests are kept in {prepared.options.out}/cells - "
            "run the same command again to resume",
            err=True,
        )
        raise typer.Exit(130) from None
    if as_json:
        print_json(doc)
    else:
        _print_summary(doc)
    failed = [t for t in doc["thresholds"] if not t["passed"]]
    for t in failed:
        typer.echo(
            f"FAIL {t['metric']} of {t['cell']} is {t['value']} (needs {t['bound']})"
            + (f": {t['reason']}" if t.get("reason") else ""),
            err=True,
        )
    if check and failed:
        raise typer.Exit(1)


def settings_home(config: Path | None) -> Path:
    return load_settings(config).home


@eval_app.command("validate")
@handles_errors
def validate_cmd(
    suite_file: Annotated[Path, typer.Argument(help="The suite to check.")],
    data: Annotated[Path | None, typer.Option(help="Dataset path (overrides the suite).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: Path | None = ConfigOption,
) -> None:
    """Check a suite and its dataset without running anything."""
    _, _, prepared = _prepare(suite_file, config, out=None, data=data)
    doc = {
        "suite": prepared.suite.name,
        "dataset": prepared.dataset.name,
        "stats": prepared.dataset.stats,
        "collection": prepared.collection,
        "users_evaluated": len(prepared.cases),
        "cells": [{"id": c.id, "users": len(c.cases)} for c in prepared.cells],
        "requests": sum(len(c.cases) for c in prepared.cells),
    }
    if as_json:
        print_json(doc)
        return
    s = doc["stats"]
    typer.echo(
        f"{doc['suite']}: {doc['dataset']} - {s.get('users')} users, {s.get('items')} items; "
        f"{doc['users_evaluated']} users evaluated; {doc['requests']} requests in "
        f"{len(doc['cells'])} cells"
    )
    for c in doc["cells"]:
        typer.echo(f"  {c['id']}: {c['users']} users")


def _print_summary(doc: dict) -> None:
    from genrec.evaluation.report_tables import all_rows, fmt, headline_keys

    keys = headline_keys(doc["protocol"]["ks"])
    rows = all_rows(doc)
    width = max(len(r["id"]) for r in rows)
    typer.echo(f"{'cell':<{width}}  {'n':>4}  " + "  ".join(f"{key:>16}" for key in keys))
    for r in rows:
        vals = "  ".join(f"{fmt(r['metrics'].get(key)):>16}" for key in keys)
        typer.echo(f"{r['id']:<{width}}  {r.get('users_completed', 0):>4}  {vals}")
    reports = doc.get("reports", {})
    typer.echo(f"\nreports: {reports.get('markdown')}  {reports.get('html')}")


def register(app: typer.Typer, bench: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
