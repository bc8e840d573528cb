"""Interaction logs as arrays: what training reads.

:func:`read_columns` streams the same rows as :func:`genrec.data.interactions.read_log` (same
formats, same errors by line) into compact arrays (user and item codes, timestamps: 16 bytes an
event), never a Python object per row, so a 10-million-line log costs ~160 MB plus its distinct
IDs. A plain CSV block is split by numpy at once; anything else goes row by row.
"""

from __future__ import annotations

import csv
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genrec.data.interactions import Interaction, Row, log_file, log_rows, parse_timestamp
from genrec.errors import CatalogError

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
        parts = log_rows(file, fmt)
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
