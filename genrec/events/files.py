"""Event files: ``genrec events import`` reads an interaction log (the formats ``genrec train``
reads: MovieLens folders, ML-100K's .inter, CSV, JSONL), ``genrec events export`` writes one.

An exported file is itself a CSV or JSONL log (``user_id, item_id, timestamp, rating`` plus
``type``, ``value``, ``event_id``), so ``genrec train`` reads it and an import restores it. A log
row without a type is a ``rate`` when it has a rating, else a ``view``; a row without an
``event_id`` gets one derived from its content, so importing the same file twice adds nothing.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from genrec.data.interactions import guess_format, read_log
from genrec.data.lines import nonblank_lines
from genrec.errors import CatalogError
from genrec.events.model import StoredEvent

EXPORT_COLUMNS = ("user_id", "item_id", "timestamp", "rating", "type", "value", "event_id")


def read_event_file(path: Path, fmt: str | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """(event documents for :func:`genrec.events.record_events`, "FILE:LINE: reason" for rows that
    cannot be read at all)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CatalogError(f"event file not found: {path}", param="file")
    fmt = fmt or guess_format(path)
    if fmt in ("csv", "jsonl"):
        rows = _csv(path) if fmt == "csv" else _jsonl(path)
        docs, errors = [], []
        for line, row in rows:
            if isinstance(row, str):
                errors.append(f"{path}:{line}: {row}")
            else:
                docs.append(_with_id(row))
        return docs, errors
    read = read_log(path, fmt)
    docs = [
        _with_id(
            {
                "user_id": x.user,
                "item_id": x.item,
                "type": "rate" if x.rating is not None else "view",
                "value": x.rating,
                "timestamp": x.timestamp,
            }
        )
        for x in read.interactions
    ]
    return docs, read.errors


def _with_id(doc: dict[str, Any]) -> dict[str, Any]:
    if not doc.get("event_id"):
        key = "\x1f".join(str(doc.get(k)) for k in ("user_id", "item_id", "type", "timestamp"))
        doc["event_id"] = "import-" + hashlib.sha1(key.encode()).hexdigest()[:20]
    return {k: v for k, v in doc.items() if v is not None}


def _number(value: object) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"bad number {value!r}")
    return float(value)  # type: ignore[arg-type]


def _event_doc(raw: dict[str, Any]) -> dict[str, Any] | str:
    missing = [k for k in ("user_id", "item_id") if raw.get(k) in (None, "")]
    if missing:
        return f"missing {missing}"
    try:
        rating, value = _number(raw.get("rating")), _number(raw.get("value"))
    except (TypeError, ValueError) as exc:
        return str(exc)
    kind = raw.get("type") or ("rate" if rating is not None else "view")
    ts = raw.get("timestamp")
    return {
        "user_id": str(raw["user_id"]),
        "item_id": str(raw["item_id"]),
        "type": kind,
        "value": value if value is not None else rating,
        "timestamp": None if ts in (None, "") else ts,
        "event_id": raw.get("event_id") or None,
    }


def _csv(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        names = set(reader.fieldnames or ())
        if not {"user_id", "item_id"} <= names:
            raise CatalogError(
                f"{path}: an event CSV needs user_id and item_id columns (has {sorted(names)})",
                param="file",
            )
        for line, row in enumerate(reader, start=2):
            yield line, _event_doc(row)


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    for line, raw in nonblank_lines(path):
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            yield line, f"bad JSON ({exc})"
            continue
        yield line, _event_doc(doc) if isinstance(doc, dict) else "not a JSON object"


def write_event_file(events: Iterable[StoredEvent], out: Path, fmt: str) -> int:
    """Write the events atomically (a temporary file renamed into place); the number written."""
    if fmt not in ("csv", "jsonl"):
        raise CatalogError(f"unknown export format {fmt!r}; use csv or jsonl", param="format")
    out = Path(out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    n = 0
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f) if fmt == "csv" else None
            if writer is not None:
                writer.writerow(EXPORT_COLUMNS)
            for e in events:
                rating = e.value if e.type == "rate" else None
                row = (e.user_id, e.item_id, e.timestamp, rating, e.type, e.value, e.event_id)
                if writer is not None:
                    writer.writerow(["" if v is None else v for v in row])
                else:
                    doc = {k: v for k, v in zip(EXPORT_COLUMNS, row, strict=True) if v is not None}
                    f.write(json.dumps(doc, ensure_ascii=False) + "\n")
                n += 1
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return n
