"""The `genrec` command line. Each area registers its commands from its own module.

Every command that prints results takes --json: one JSON document on stdout, nothing else there;
logs and progress go to stderr.
"""

from __future__ import annotations

import typer

from genrec.cli import bench as benchmarks
from genrec.cli import catalog, core, evaluate, events, finetune, serve, train

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__.splitlines()[0])
bench = typer.Typer(no_args_is_help=True, help="Benchmarks that print JSON.")
app.add_typer(bench, name="bench")

for _module in (catalog, core, serve, evaluate, train, finetune, events, benchmarks):
    _module.register(app, bench)
