"""Reading line-oriented files (JSON Lines) with the line numbers errors name."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from genrec.errors import CatalogError

T = TypeVar("T")


def nonblank_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number from 1, text) of each line of a UTF-8 file that is not blank."""
    with path.open(encoding="utf-8") as f:
        for line, raw in enumerate(f, start=1):
            if raw.strip():
                yield line, raw


def json_records(
    path: Path, parse: Callable[[Any], T], *, expected: str, param: str
) -> Iterator[tuple[int, T]]:
    """(line number, ``parse(the line's JSON)``) of each non-blank line; a line that is not JSON
    or that ``parse`` refuses (ValueError, KeyError, TypeError) is a CatalogError naming the file,
    the line and what a line should hold (``expected``)."""
    for line, raw in nonblank_lines(path):
        try:
            value = parse(json.loads(raw))
        except (ValueError, KeyError, TypeError) as exc:
            raise CatalogError(f"{path}:{line}: expected {expected} ({exc})", param=param) from None
        yield line, value
