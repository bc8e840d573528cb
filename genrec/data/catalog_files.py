"""Catalog files and the loaders that read them into items (JSONL, CSV, MovieLens).

Every loader returns a :class:`LoadResult`: the good items plus one :class:`RowError` per bad row
(missing id or title, wrong types, duplicate ids), each with its line number, so a caller can
ingest the good rows and report the bad ones, or refuse everything (``strict=True``).
:class:`CatalogFile` is the streamed form of a JSONL/CSV file (what ingest uses): it reads the
file row by row on every pass and holds only the IDs seen, so a 300k-item catalog costs about
70 MB of state, not the items.
Problems with the source as a whole (missing file, unknown format, not UTF-8, no items at all)
raise :class:`genrec.errors.CatalogError` with a one-line message naming the file.

Formats
    ``jsonl``      one JSON object per line with the :class:`Item` fields; other scalar keys
                   become attributes; ``tags`` may be a list or a ``|``-separated string.
    ``csv``        a header row; columns named like Item fields (or mapped with ``mapping``,
                   e.g. ``{"id": "movieId", "title": "name"}``); other columns become attributes.
                   ``.tsv`` files are tab-separated.
    ``movielens``  a MovieLens folder: latest-small (``movies.csv`` + ``ratings.csv``), the
                   RecBole atomic files (``*.item`` + ``*.inter``), or the original ML-100K
                   (``u.item`` + ``u.data``). Popularity is the number of ratings.

Datasets shipped with installed packages: ``ml-100k`` (MovieLens 100K inside ``recbole``) and
``zh-shop`` (a Chinese e-commerce catalog written for genrec, in :mod:`genrec.datasets`).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from genrec.data.item import ITEM_FIELDS, Item
from genrec.data.movielens import load_movielens_folder, load_recbole, ml100k_dir
from genrec.datasets import zh_shop_catalog
from genrec.errors import CatalogError

FORMATS = ("jsonl", "csv", "movielens")
DATASETS = ("ml-100k", "zh-shop")
RawRow = tuple[int, dict[str, Any] | str]  # (line, fields) or (line, error message)


@dataclass(frozen=True)
class RowError:
    """A bad row: where it is and what is wrong with it."""

    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class LoadResult:
    items: list[Item]
    errors: list[RowError] = field(default_factory=list)
    source: str = ""
    format: str = ""


# --------------------------------------------------------------------------- public entry points


def load_catalog(
    source: str | Path,
    *,
    fmt: str | None = None,
    mapping: dict[str, str] | None = None,
    strict: bool = False,
) -> LoadResult:
    """Read a catalog file or folder (or a dataset name such as ``ml-100k``).

    ``fmt`` is one of :data:`FORMATS` (guessed from the name when None); ``mapping`` renames
    source fields to Item fields (``{"id": "movieId"}``); ``strict`` makes any bad row fatal.
    """
    path = Path(source).expanduser()
    if not path.exists():
        if fmt is None and str(source) in DATASETS:
            return LoadResult(load_dataset(str(source)), [], str(source), "dataset")
        hint = f" (for the packaged dataset use --dataset {source})" if source in DATASETS else ""
        raise CatalogError(f"catalog {path} does not exist; check the path{hint}")
    fmt = fmt or _guess_format(path)
    if fmt not in FORMATS:
        raise CatalogError(
            f"unknown catalog format {fmt!r} for {path}; use one of {', '.join(FORMATS)}"
        )
    if fmt == "movielens":
        if mapping:
            raise CatalogError(f"--map does not apply to the MovieLens folder {path}")
        result = LoadResult(load_movielens_folder(path), [], str(path), fmt)
        check_rows(path, len(result.items), result.errors, strict=strict)
        return result
    stream = CatalogFile(path, fmt=fmt, mapping=mapping, strict=strict)
    items = list(stream)
    return LoadResult(items, stream.errors, str(path), fmt)


def open_source(
    source: str | Path,
    *,
    fmt: str | None = None,
    mapping: dict[str, str] | None = None,
    strict: bool = False,
) -> CatalogFile | LoadResult:
    """Like :func:`load_catalog`, but a JSONL/CSV file comes back as a :class:`CatalogFile`
    (streamed, never held whole); folders and datasets are loaded (they are small)."""
    path = Path(source).expanduser()
    if path.is_file():
        fmt = fmt or _guess_format(path)
        if fmt in ("jsonl", "csv"):
            return CatalogFile(path, fmt=fmt, mapping=mapping, strict=strict)
    return load_catalog(source, fmt=fmt, mapping=mapping, strict=strict)


def check_rows(path: Path, good: int, errors: list[RowError], *, strict: bool) -> None:
    """The source as a whole: any bad row is fatal when ``strict``; no valid item always is."""
    if strict and errors:
        shown = "; ".join(str(e) for e in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        raise CatalogError(
            f"{path}: {len(errors)} bad row(s): {shown}{more}; fix them or drop --strict"
        )
    if not good:
        raise CatalogError(f"catalog {path} has no valid items; check its format and contents")


class CatalogFile:
    """A JSONL or CSV catalog read row by row, as often as it is iterated: nothing is held but
    the IDs seen in the current pass (for duplicate rows), so memory does not grow with the
    items. ``errors`` are the bad rows of the last finished pass. A pass that ends with a
    reason to refuse the source (:func:`check_rows`) raises CatalogError then, so a writer
    whose first pass only reads writes nothing for a bad source."""

    def __init__(
        self,
        path: Path,
        *,
        fmt: str | None = None,
        mapping: dict[str, str] | None = None,
        strict: bool = False,
    ) -> None:
        self.path = path
        self.format = fmt or _guess_format(path)
        if self.format not in ("jsonl", "csv"):
            raise CatalogError(f"{path}: a streamed catalog is jsonl or csv, not {self.format}")
        self.source = str(path)
        self.mapping = mapping or {}
        self.strict = strict
        self.errors: list[RowError] = []

    def __iter__(self) -> Iterator[Item]:
        reader = _read_jsonl if self.format == "jsonl" else _read_csv
        errors: list[RowError] = []
        good = 0
        for item in _validate_rows(reader(self.path, self.mapping), errors):
            good += 1
            yield item
        self.errors = errors
        check_rows(self.path, good, errors, strict=self.strict)


def load_dataset(name: str) -> list[Item]:
    """A dataset shipped inside an installed package: ``ml-100k`` (from recbole) or ``zh-shop``
    (genrec's own Chinese e-commerce catalog, genrec/datasets)."""
    if name == "zh-shop":
        return load_catalog(zh_shop_catalog(), fmt="jsonl", strict=True).items
    if name != "ml-100k":
        raise CatalogError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return load_recbole(ml100k_dir(), "ml-100k")


def parse_mapping(pairs: Iterable[str]) -> dict[str, str]:
    """``["id=movieId,title=name", "tags=genres"]`` -> ``{"id": "movieId", ...}``."""
    mapping: dict[str, str] = {}
    for chunk in pairs:
        for pair in chunk.split(","):
            if not pair.strip():
                continue
            target, sep, src = pair.partition("=")
            if not sep or not target.strip() or not src.strip():
                raise CatalogError(f"bad --map entry {pair!r}; write FIELD=COLUMN, e.g. id=movieId")
            mapping[target.strip()] = src.strip()
    return mapping


# --------------------------------------------------------------------------- generic rows


def _guess_format(path: Path) -> str:
    if path.is_dir():
        return "movielens"
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return "csv"
    raise CatalogError(
        f"cannot tell the format of {path} from its name; pass --format {'|'.join(FORMATS)}"
    )


def _lines(path: Path) -> Iterator[str]:
    """The file's lines as text (a BOM dropped), read as they are needed; bytes that are not
    UTF-8 are a CatalogError naming the line."""
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise CatalogError(f"cannot read {path}: {exc.strerror}; check the path") from exc
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise CatalogError(
                    f"{path} is not UTF-8 (bad byte at line {lineno}); re-save it as UTF-8, "
                    f"e.g. iconv -f latin1 -t utf-8"
                ) from exc
            yield line


def _read_jsonl(path: Path, mapping: dict[str, str]) -> Iterator[RawRow]:
    for lineno, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            yield lineno, f"not valid JSON ({exc.msg})"
            continue
        if not isinstance(obj, dict):
            yield lineno, "expected a JSON object"
            continue
        yield lineno, _apply_mapping(obj, mapping)


def _read_csv(path: Path, mapping: dict[str, str]) -> Iterator[RawRow]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.DictReader(_lines(path), delimiter=delimiter)
    header = reader.fieldnames or []
    if not header:
        raise CatalogError(f"{path} is empty; a CSV catalog needs a header row and items")
    missing = [src for src in mapping.values() if src not in header]
    if missing:
        raise CatalogError(
            f"{path} has no column {', '.join(missing)} (columns: {', '.join(header)}); fix --map"
        )
    for row in reader:
        if None in row:
            yield reader.line_num, f"more fields than the header's {len(header)}"
            continue
        fields = {k: v for k, v in row.items() if v is not None and v != ""}
        fields = _apply_mapping(fields, mapping)
        yield (
            reader.line_num,
            {k: v if k in ITEM_FIELDS else _coerce_scalar(v) for k, v in fields.items()},
        )


def _apply_mapping(obj: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    if not mapping:
        return obj
    sources = set(mapping.values())
    out = {k: v for k, v in obj.items() if k not in sources}
    for target, src in mapping.items():
        if src in obj:
            out[target] = obj[src]
    return out


def _coerce_scalar(value: Any) -> Any:
    """CSV cells are text: give numbers their type so filters like ``year > 1990`` work."""
    if not isinstance(value, str):
        return value
    v = value.strip()
    if re.fullmatch(r"-?(0|[1-9]\d{0,17})", v):
        return int(v)
    if re.fullmatch(r"-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?", v):
        return float(v)
    return value


def _row_to_item(fields: dict[str, Any]) -> Item:
    data: dict[str, Any] = {}
    attributes: dict[str, Any] = {}
    for key, value in fields.items():
        if key in ITEM_FIELDS:
            data[key] = value
        else:
            attributes[key] = value
    for key in ("id", "title"):
        if key not in data or data[key] is None or data[key] == "":
            raise ValueError(f"missing {key}")
    if isinstance(data["id"], int) and not isinstance(data["id"], bool):
        data["id"] = str(data["id"])  # numeric IDs in JSON are fine; IDs are strings
    if isinstance(data.get("tags"), str):
        data["tags"] = [t.strip() for t in data["tags"].split("|") if t.strip()]
    if isinstance(data.get("popularity"), str):
        try:
            data["popularity"] = float(data["popularity"])
        except ValueError:
            raise ValueError(f"popularity must be a number, got {data['popularity']!r}") from None
    extra = data.pop("attributes", None) or {}
    if not isinstance(extra, dict):
        raise ValueError("attributes must be an object")
    for key, value in {**extra, **attributes}.items():
        if isinstance(value, dict | list):
            raise ValueError(f"attribute {key!r} must be a string, number or boolean")
        if value is not None:
            data.setdefault("attributes", {})[key] = value
    return Item.model_validate(data, strict=False)


def _validate_rows(rows: Iterable[RawRow], errors: list[RowError]) -> Iterator[Item]:
    """The good rows as items; each bad one (and each repeated ID) appended to ``errors``."""
    seen: dict[str, int] = {}  # id -> first line: the one thing a pass keeps per row
    for line, fields in rows:
        if isinstance(fields, str):
            errors.append(RowError(line, fields))
            continue
        try:
            item = _row_to_item(fields)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            errors.append(RowError(line, f"{where}: {first['msg']}"))
            continue
        except ValueError as exc:
            errors.append(RowError(line, str(exc)))
            continue
        first_line = seen.setdefault(item.id, line)
        if first_line != line:
            errors.append(RowError(line, f"duplicate id {item.id!r} (first on line {first_line})"))
            continue
        yield item
