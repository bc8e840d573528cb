"""Reading line-oriented files (JSON Lines) with the line numbers errors name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


def nonblank_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number from 1, text) of each line of a UTF-8 file that is not blank."""
    with path.open(encoding="utf-8") as f:
        for line, raw in enumerate(f, start=1):
            if raw.strip():
                yield line, raw
