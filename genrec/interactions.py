"""Interaction logs: who interacted with which item when (what ``genrec train`` learns from).

Formats (``fmt``, or guessed from the path):

- ``movielens``: a MovieLens folder (``ratings.csv``: userId, movieId, rating, timestamp);
- ``ml-100k``: MovieLens 100K as the recbole wheel ships it (``ml-100k.inter``), or that file;
- ``csv``: a header with ``user_id``, ``item_id``, ``timestamp`` and optionally ``rating``;
- ``jsonl``: one ``{"user_id", "item_id", "timestamp", "rating"?}`` object per line.

Timestamps are numbers (Unix seconds) or ISO 8601 strings. A bad row is reported by its line
number and skipped (``strict``: the first one is fatal); an empty log, or one without a timestamp
column, is an error naming the file before any training starts.

:func:`read_log` gives one ``Interaction`` per row (small logs: evaluation, event import);
:func:`read_columns` is what training reads: the same rows streamed into compact arrays (user
and item codes, timestamps: 16 bytes an event), never a Python object per row, so a
10-million-line log costs ~160 MB plus its distinct IDs.
"""

from __future__ import annotations

import csv
import json
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from genrec.errors import CatalogError
from genrec.evaluation.splits import Interaction

FORMATS = ("movielens", "ml-100k", "csv", "jsonl")


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


MAX_ERRORS = 1000  # bad-row messages kept (all are counted)


@dataclass
class LogColumns:
    """An interaction log as arrays: event e is user ``user_names[users[e]]`` on item
    ``item_names[items[e]]`` at ``timestamps[e]``; users and items are coded in order of first
    appearance."""

    source: str
    users: np.ndarray  # int32
    items: np.ndarray  # int32
    timestamps: np.ndarray  # float64
    user_names: list[str]
    item_names: list[str]
    errors: list[str] = field(default_factory=list)  # the first MAX_ERRORS bad rows
    bad_rows: int = 0

    def __len__(self) -> int:
        return len(self.users)

    @classmethod
    def from_interactions(cls, source: str, rows: Iterable[Interaction]) -> LogColumns:
        coder = _Coder()
        for x in rows:
            coder.add(x.user, x.item, x.timestamp)
        return coder.columns(source)


class _Coder:
    """Codes users and items as they come and appends to compact typed arrays."""

    def __init__(self) -> None:
        self.user_code: dict[str, int] = {}
        self.item_code: dict[str, int] = {}
        self.users = array("i")
        self.items = array("i")
        self.times = array("d")

    def add(self, user: str, item: str, ts: float) -> None:
        u = self.user_code.setdefault(user, len(self.user_code))
        i = self.item_code.setdefault(item, len(self.item_code))
        self.users.append(u)
        self.items.append(i)
        self.times.append(ts)

    def add_block(self, users: np.ndarray, items: np.ndarray, times: np.ndarray) -> None:
        """A block of well-formed rows at once: codes by np.unique, a Python step per distinct
        ID of the block only."""
        self.users.frombytes(self._codes(users, self.user_code).tobytes())
        self.items.frombytes(self._codes(items, self.item_code).tobytes())
        self.times.frombytes(times.astype(np.float64).tobytes())

    @staticmethod
    def _codes(names: np.ndarray, table: dict[str, int]) -> np.ndarray:
        uniq, first, inverse = np.unique(names, return_index=True, return_inverse=True)
        codes = np.empty(len(uniq), dtype=np.int32)
        for j in np.argsort(first, kind="stable"):  # new IDs coded in order of appearance
            codes[j] = table.setdefault(uniq[j].decode(), len(table))
        return codes[inverse]

    def columns(self, source: str) -> LogColumns:
        return LogColumns(
            source=source,
            users=np.frombuffer(self.users, dtype=np.int32),
            items=np.frombuffer(self.items, dtype=np.int32),
            timestamps=np.frombuffer(self.times, dtype=np.float64),
            user_names=list(self.user_code),
            item_names=list(self.item_code),
        )


def log_file(path: Path | None, fmt: str | None) -> tuple[Path, str]:
    """The file a log path names and its format (CatalogError when there is none)."""
    if path is None:
        if fmt not in (None, "ml-100k"):
            raise CatalogError(f"an interaction log of format {fmt!r} needs a path", param="log")
        from genrec.data.movielens import ml100k_dir

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


def read_columns(path: Path | None, fmt: str | None = None, *, strict: bool = False) -> LogColumns:
    """Read an interaction log into arrays, streaming (see the module docstring)."""
    file, fmt = log_file(path, fmt)
    coder = _Coder()
    errors: list[str] = []
    bad = 0
    parts: Iterable[tuple[int, Row] | _Block]
    if fmt in ("csv", "movielens"):
        names = ("userId", "movieId", "timestamp") if fmt == "movielens" else _CSV_COLUMNS
        parts = _csv_blocks(file, names)
    else:
        parts = _rows(file, fmt)
    for part in parts:
        if isinstance(part, _Block):
            coder.add_block(part.users, part.items, part.times)
            continue
        line, row = part
        try:
            if isinstance(row, str):
                raise ValueError(row)
            user, item, ts, _ = row
            user, item = str(user).strip(), str(item).strip()
            if not user or not item:
                raise ValueError("empty user or item id")
            try:
                t = float(ts)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                t = parse_timestamp(ts)
            if t != t or t in (float("inf"), float("-inf")) or isinstance(ts, bool):
                raise ValueError(f"bad timestamp {ts!r}")
            coder.add(user, item, t)
        except (TypeError, ValueError) as exc:
            message = f"{file}:{line}: {exc}"
            if strict:
                raise CatalogError(f"bad row: {message}", param="log") from None
            bad += 1
            if len(errors) < MAX_ERRORS:
                errors.append(message)
    cols = coder.columns(str(file))
    cols.errors, cols.bad_rows = errors, bad
    if not len(cols):
        raise CatalogError(f"{file}: no usable interactions ({bad} bad rows)", param="log")
    return cols


_CSV_COLUMNS = ("user_id", "item_id", "timestamp")
BLOCK_BYTES = 8 << 20  # a CSV is read this much at a time


@dataclass
class _Block:
    users: np.ndarray  # bytes IDs
    items: np.ndarray
    times: np.ndarray  # float64


def _csv_blocks(file: Path, columns: tuple[str, str, str]) -> Iterator[tuple[int, Row] | _Block]:
    """A CSV log in blocks of lines: a block of plain rows (no quotes, spaces, blank lines,
    short rows or non-numeric timestamps) is split and converted by numpy at once; any other
    block goes row by row through the csv module, so bad rows keep their line numbers."""
    if not file.is_file():
        raise CatalogError(f"interaction file not found: {file}", param="log")
    with file.open("rb") as f:
        header_line = f.readline()
        header = next(csv.reader([header_line.decode("utf-8-sig")]), [])
        missing = [c for c in columns if c not in header]
        if missing:
            raise CatalogError(
                f"{file}: missing column(s) {missing} (has {sorted(header)}); a log needs "
                f"{', '.join(columns)} (the order of events matters)",
                param="log",
            )
        width = len(header)
        iu, ii, it = (header.index(c) for c in columns)
        line = 2  # the first line of the next block
        rest = b""
        while True:
            data = f.read(BLOCK_BYTES)
            chunk = rest + data
            if data:
                cut = chunk.rfind(b"\n") + 1
                if not cut:
                    rest = chunk
                    continue
                chunk, rest = chunk[:cut], chunk[cut:]
            else:
                rest = b""
            if not chunk:
                return
            lines = chunk.count(b"\n") + (not chunk.endswith(b"\n"))
            block = _plain_block(chunk, width, (iu, ii, it))
            if block is not None:
                yield block
            else:
                text = chunk.decode("utf-8").splitlines(keepends=True)
                yield from _csv_rows_of(text, line, header, columns)
            line += lines
            if not data:
                return


def _plain_block(chunk: bytes, width: int, cols: tuple[int, int, int]) -> _Block | None:
    """The block's columns when every row is plain, else None."""
    body = chunk.replace(b"\r\n", b"\n").rstrip(b"\n")
    if not body or any(c in body for c in (b'"', b" ", b"\n\n", b"\t")):
        return None
    fields = body.replace(b"\n", b",").split(b",")
    rows = body.count(b"\n") + 1
    if len(fields) != rows * width:
        return None
    users = np.array(fields[cols[0] :: width])
    items = np.array(fields[cols[1] :: width])
    if (np.char.str_len(users) == 0).any() or (np.char.str_len(items) == 0).any():
        return None
    try:
        times = np.array(fields[cols[2] :: width]).astype(np.float64)
    except ValueError:
        return None
    if not np.isfinite(times).all():
        return None
    return _Block(users, items, times)


def _csv_rows_of(
    text: list[str], first_line: int, header: list[str], columns: tuple[str, str, str]
) -> Iterator[tuple[int, Row]]:
    iu, ii, it = (header.index(c) for c in columns)
    need = max(iu, ii, it)
    reader = csv.reader(text)
    for row in reader:
        line = first_line + reader.line_num - 1
        if not row:
            continue
        if len(row) <= need:
            yield line, f"{len(row)} columns, the header has {len(header)}"
            continue
        yield line, (row[iu], row[ii], row[it], None)


def _rows(file: Path, fmt: str) -> Iterator[tuple[int, Row]]:
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
    rows = _rows(file, fmt)
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
    with file.open(encoding="utf-8") as f:
        for line, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
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
