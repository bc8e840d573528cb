"""What every CLI command shares: settings, JSON output, and one way to report errors."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any

import typer

from genrec.errors import GenrecError
from genrec.settings import Settings

ConfigOption = typer.Option(None, "--config", help="TOML settings file (else GENREC_CONFIG).")


def load_settings(config: Path | None, **overrides: Any) -> Settings:
    return Settings.load(config, **{k: v for k, v in overrides.items() if v is not None})


def print_json(doc: Any) -> None:
    """The one JSON document a --json command writes to stdout."""
    sys.stdout.write(json.dumps(doc, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def handles_errors(fn: Callable) -> Callable:
    """Turn genrec's errors into a one-line message on stderr and a non-zero exit."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        try:
            return fn(*args, **kwargs)
        except GenrecError as exc:
            # Exit 2 for what the caller can fix (a 4xx over HTTP), 1 for a failure: the server's
            # table decides both, imported only when there is an error to report.
            from genrec.server.errors import http_status

            fail(exc.message, 2 if http_status(exc) < 500 else 1)
        except ValueError as exc:  # pydantic validation of options
            fail(str(exc), 2)

    return wrapper


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Point fd 1 at stderr (inherited by child processes) until the block ends: vLLM and its
    spawned engine process log to stdout, and --json promises one JSON document there."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
