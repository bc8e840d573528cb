"""Interaction logs: who interacted with which item when (what ``genrec train`` learns from).

Formats (``fmt``, or guessed from the path):

- ``movielens``: a MovieLens folder (``ratings.csv``: userId, movieId, rating, timestamp);
- ``ml-100k``: MovieLens 100K as the recbole wheel ships it (``ml-100k.inter``), or that file;
- ``csv``: a header with ``user_id``, ``item_id``, ``timestamp`` and optionally ``rating``;
- ``jsonl``: one ``{"user_id", "item_id", "timestamp", "rating"?}`` object per line.

Timestamps are numbers (Unix seconds) or ISO 8601 strings. A bad row is reported by its line
number and skipped (``strict``: the first one is fatal); an empty log, or one without a timestamp
column, is an error naming the file before any training starts.

:func:`read_log` gives one :class:`Interaction` per row (small logs: evaluation, event import);
:func:`genrec.data.log_columns.read_columns` is what training reads: the same rows streamed into
compact arrays.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from genrec.data.lines import nonblank_lines
from genrec.data.movielens import ml100k_dir
from genrec.errors import CatalogError

FORMATS = ("movielens", "ml-100k", "csv", "jsonl")


@dataclass(frozen=True)
class Interaction:
    user: str
    item: str
    timestamp: float
    rating: float | None = None


@dataclass
class LogRead:
    source: str
    interactions: list[Interaction] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # "FILE:LINE: reason"


def parse_timestamp(value: object) -> float:
    """Unix seconds from a number or an ISO 8601 string; ValueError otherwise."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"bad timestamp {value!r}")
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ValueError(f"bad timestamp {text!r} (use Unix seconds or ISO 8601)") from None


def _rating(value: object) -> float | None:
    if value is None or value == "":
        return None
    return float(value)  # type: ignore[arg-type]


def guess_format(path: Path) -> str:
    if path.is_dir():
        return "ml-100k" if (path / "ml-100k.inter").is_file() else "movielens"
    if path.name.endswith(".inter"):
        return "ml-100k"
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return "jsonl"
    return "csv"


def log_file(path: Path | None, fmt: str | None) -> tuple[Path, str]:
    """The file a log path names and its format (CatalogError when there is none)."""
    if path is None:
        if fmt not in (None, "ml-100k"):
            raise CatalogError(f"an interaction log of format {fmt!r} needs a path", param="log")
        path, fmt = Path(ml100k_dir()), "ml-100k"
    path = Path(path).expanduser()
    if not path.exists():
        raise CatalogError(f"interaction log not found: {path}", param="log")
    fmt = fmt or guess_format(path)
    if fmt not in FORMATS:
        raise CatalogError(f"unknown log format {fmt!r}; use one of {FORMATS}", param="format")
    if fmt == "movielens" and path.is_dir():
        return path / "ratings.csv", fmt
    if fmt == "ml-100k" and path.is_dir():
        return path / "ml-100k.inter", fmt
    return path, fmt


def log_rows(file: Path, fmt: str) -> Iterator[tuple[int, Row]]:
    """(line, row) for each line of a log file: what read_log reads, and what read_columns
    reads of the formats it does not split by numpy."""
    if fmt == "movielens":
        return _csv_rows(file, ("userId", "movieId", "timestamp", "rating"))
    if fmt == "ml-100k":
        return _atomic_rows(file)
    if fmt == "csv":
        return _csv_rows(file, ("user_id", "item_id", "timestamp", "rating"))
    return _jsonl_rows(file)


def read_log(path: Path | None, fmt: str | None = None, *, strict: bool = False) -> LogRead:
    """Read an interaction log (``path`` None with ``fmt`` ml-100k: the packaged ML-100K)."""
    file, fmt = log_file(path, fmt)
    rows = log_rows(file, fmt)
    read = LogRead(source=str(file))
    for line, row in rows:
        try:
            if isinstance(row, str):
                raise ValueError(row)
            user, item, ts, rating = row
            if not str(user).strip() or not str(item).strip():
                raise ValueError("empty user or item id")
            read.interactions.append(
                Interaction(
                    str(user).strip(), str(item).strip(), parse_timestamp(ts), _rating(rating)
                )
            )
        except (TypeError, ValueError) as exc:
            message = f"{file}:{line}: {exc}"
            if strict:
                raise CatalogError(f"bad row: {message}", param="log") from None
            read.errors.append(message)
    if not read.interactions:
        raise CatalogError(
            f"{file}: no usable interactions ({len(read.errors)} bad rows)", param="log"
        )
    return read


# (user, item, timestamp, rating) as read, or why the line cannot be read
Row = tuple[object, object, object, object] | str


def _csv_rows(file: Path, columns: tuple[str, str, str, str]) -> Iterator[tuple[int, Row]]:
    user_col, item_col, ts_col, rating_col = columns
    if not file.is_file():
        raise CatalogError(f"interaction file not found: {file}", param="log")
    with file.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        names = set(header)
        missing = [c for c in (user_col, item_col, ts_col) if c not in names]
        if missing:
            raise CatalogError(
                f"{file}: missing column(s) {missing} (has {sorted(names)}); a log needs "
                f"{user_col}, {item_col} and {ts_col} (the order of events matters)",
                param="log",
            )
        iu, ii, it = header.index(user_col), header.index(item_col), header.index(ts_col)
        ir = header.index(rating_col) if rating_col in names else None
        need = max(iu, ii, it)
        # A reader line counts physical lines, so a quoted field with a newline stays exact.
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) <= need:
                yield line, f"{len(row)} columns, the header has {len(header)}"
                continue
            rating = row[ir] if ir is not None and ir < len(row) else None
            yield line, (row[iu], row[ii], row[it], rating)


def _atomic_rows(file: Path) -> Iterator[tuple[int, Row]]:
    if not file.is_file():
        raise CatalogError(f"interaction file not found: {file}", param="log")
    with file.open(encoding="utf-8") as f:
        header = [h.split(":", 1)[0] for h in f.readline().rstrip("\n").split("\t")]
        try:
            iu, ii, it = (header.index(c) for c in ("user_id", "item_id", "timestamp"))
        except ValueError:
            raise CatalogError(
                f"{file}: header needs user_id, item_id and timestamp, has {header}", param="log"
            ) from None
        ir = header.index("rating") if "rating" in header else None
        for line, raw in enumerate(f, start=2):
            if not raw.strip():
                continue
            cols = raw.rstrip("\n").split("\t")
            if len(cols) < len(header):
                yield line, f"{len(cols)} columns, the header has {len(header)}"
                continue
            yield line, (cols[iu], cols[ii], cols[it], cols[ir] if ir is not None else None)


def _jsonl_rows(file: Path) -> Iterator[tuple[int, Row]]:
    for line, raw in nonblank_lines(file):
        try:
            doc = json.loads(raw)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            missing = [k for k in ("user_id", "item_id", "timestamp") if k not in doc]
            if missing:
                raise ValueError(f"missing {missing}")
        except ValueError as exc:
            yield line, f"bad line ({exc})"
            continue
        yield line, (doc["user_id"], doc["item_id"], doc["timestamp"], doc.get("rating"))
