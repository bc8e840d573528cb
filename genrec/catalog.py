"""Catalog items and the loaders that read them (JSONL, CSV, MovieLens).

Every loader returns a :class:`LoadResult`: the good items plus one :class:`RowError` per bad row
(missing id or title, wrong types, duplicate ids), each with its line number, so a caller can
ingest the good rows and report the bad ones, or refuse everything (``strict=True``).
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

Datasets shipped with installed packages: ``ml-100k`` (MovieLens 100K inside ``recbole``).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from genrec.errors import CatalogError

AttrValue = str | int | float | bool

FORMATS = ("jsonl", "csv", "movielens")
DATASETS = ("ml-100k",)
ITEM_FIELDS = ("id", "title", "description", "category", "tags", "attributes", "popularity")


class Item(BaseModel):
    """One catalog item. `id` is the catalog's own ID, always a string."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    title: str = Field(min_length=1)
    description: str = ""
    category: str = ""
    tags: list[str] = Field(default_factory=list)  # genres for MovieLens
    attributes: dict[str, AttrValue] = Field(default_factory=dict)  # e.g. {"year": 1995}
    popularity: float | None = None

    @field_validator("id", "title")
    @classmethod
    def _strip(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("must not be blank")
        return v

    def embedding_text(self) -> str:
        """The one rule for the text that gets embedded, empty parts left out:
        ``"{title}. {category}. Genres: {tags, comma-separated}. {description}."``
        """
        parts = [self.title]
        if self.category:
            parts.append(self.category)
        if self.tags:
            parts.append("Genres: " + ", ".join(self.tags))
        if self.description:
            parts.append(self.description)
        return ". ".join(p.strip().rstrip(".") for p in parts) + "."


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
    else:
        if path.is_dir():
            raise CatalogError(f"{path} is a folder; give a {fmt} file, or --format movielens")
        reader = _read_jsonl if fmt == "jsonl" else _read_csv
        items, errors = _validate_rows(reader(path, mapping or {}))
        result = LoadResult(items, errors, str(path), fmt)
    if strict and result.errors:
        shown = "; ".join(str(e) for e in result.errors[:3])
        more = f" (and {len(result.errors) - 3} more)" if len(result.errors) > 3 else ""
        raise CatalogError(
            f"{path}: {len(result.errors)} bad row(s): {shown}{more}; fix them or drop --strict"
        )
    if not result.items:
        raise CatalogError(f"catalog {path} has no valid items; check its format and contents")
    return result


def load_dataset(name: str) -> list[Item]:
    """A dataset shipped inside an installed package. Only ``ml-100k`` (from recbole) for now."""
    if name != "ml-100k":
        raise CatalogError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    return _load_recbole(ml100k_dir(), "ml-100k")


def ml100k_dir() -> Path:
    """The MovieLens 100K folder inside the installed ``recbole`` package (never imported)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise CatalogError(
            "dataset ml-100k needs the recbole package: pip install --no-deps recbole"
        )
    path = Path(spec.submodule_search_locations[0]) / "dataset_example" / "ml-100k"
    if not (path / "ml-100k.item").is_file():
        raise CatalogError(f"{path}/ml-100k.item is missing; reinstall recbole")
    return path


def load_movielens_folder(path: str | Path) -> list[Item]:
    """A MovieLens folder: latest-small, RecBole atomic files, or the original ML-100K."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise CatalogError(f"MovieLens folder {path} does not exist or is not a folder")
    if (path / "movies.csv").is_file():
        return _load_latest(path)
    if (path / "u.item").is_file():  # before *.item: the original zip's u.item is not RecBole
        return _load_ml100k_original(path)
    recbole_items = sorted(path.glob("*.item"))
    if recbole_items:
        return _load_recbole(path, recbole_items[0].stem)
    raise CatalogError(
        f"{path} is not a MovieLens folder: expected movies.csv, <name>.item or u.item in it"
    )


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

_YEAR_RE = re.compile(r"\s*\((\d{4})(?:\s*[-–]\s*(?:\d{4})?)?\)\s*$")


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


def _open_text(path: Path):
    """Read the whole file as UTF-8 (a BOM is dropped); anything else is a CatalogError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CatalogError(f"cannot read {path}: {exc.strerror}; check the path") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CatalogError(
            f"{path} is not UTF-8 (bad byte at line {line}); re-save it as UTF-8, "
            f"e.g. iconv -f latin1 -t utf-8"
        ) from exc


RawRow = tuple[int, dict[str, Any] | str]  # (line, fields) or (line, error message)


def _read_jsonl(path: Path, mapping: dict[str, str]) -> Iterator[RawRow]:
    text = _open_text(path)
    for lineno, line in enumerate(text.splitlines(), start=1):
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
    text = _open_text(path)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.DictReader(text.splitlines(keepends=True), delimiter=delimiter)
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


def _validate_rows(rows: Iterable[RawRow]) -> tuple[list[Item], list[RowError]]:
    items: list[Item] = []
    errors: list[RowError] = []
    seen: dict[str, int] = {}
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
        if item.id in seen:
            errors.append(
                RowError(line, f"duplicate id {item.id!r} (first on line {seen[item.id]})")
            )
            continue
        seen[item.id] = line
        items.append(item)
    return items, errors


# --------------------------------------------------------------------------- MovieLens


def split_year(title: str) -> tuple[str, int | None]:
    """``"Toy Story (1995)"`` -> ``("Toy Story", 1995)``; a title without a year is kept as is."""
    m = _YEAR_RE.search(title)
    if not m or m.start() == 0:
        return title.strip(), None
    return title[: m.start()].strip(), int(m.group(1))


def _movie(item_id: str, title: str, genres: list[str], year: int | None, pop: int) -> Item:
    tags = [g for g in genres if g and g not in ("unknown", "(no genres listed)")]
    attributes: dict[str, AttrValue] = {"year": year} if year else {}
    return Item(id=item_id, title=title, tags=tags, attributes=attributes, popularity=float(pop))


def _count_column(lines: Iterable[str], column: int, sep: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for line in lines:
        parts = line.split(sep, column + 1)
        if len(parts) > column:
            counts[parts[column]] += 1
    return counts


def _load_latest(path: Path) -> list[Item]:
    ratings = path / "ratings.csv"
    counts = (
        _count_column(_open_text(ratings).splitlines()[1:], 1, ",")
        if ratings.is_file()
        else Counter()
    )
    items = []
    for row in csv.DictReader(_open_text(path / "movies.csv").splitlines()):
        title, year = split_year(row["title"])
        genres = (row.get("genres") or "").split("|")
        items.append(_movie(row["movieId"], title, genres, year, counts[row["movieId"]]))
    return items


def _load_recbole(path: Path, name: str) -> list[Item]:
    """RecBole atomic files: tab-separated, typed headers like ``item_id:token``."""
    lines = _open_text(path / f"{name}.item").splitlines()
    header = [h.split(":", 1)[0] for h in lines[0].split("\t")]
    col = {h: i for i, h in enumerate(header)}
    if "item_id" not in col:
        raise CatalogError(f"{path / (name + '.item')} has no item_id column; is it RecBole?")
    inter = path / f"{name}.inter"
    counts: Counter[str] = Counter()
    if inter.is_file():
        inter_lines = _open_text(inter).splitlines()
        ih = [h.split(":", 1)[0] for h in inter_lines[0].split("\t")]
        counts = _count_column(inter_lines[1:], ih.index("item_id"), "\t")
    title_col = col.get("movie_title", col.get("title"))
    items = []
    for line in lines[1:]:
        if not line.strip():
            continue
        cells = line.split("\t")
        cells += [""] * (len(header) - len(cells))
        item_id = cells[col["item_id"]]
        title = cells[title_col] if title_col is not None else item_id
        year_text = cells[col["release_year"]] if "release_year" in col else ""
        year = int(year_text) if year_text.isdigit() else None
        genres = cells[col["class"]].split() if "class" in col else []
        items.append(_movie(item_id, title, genres, year, counts[item_id]))
    return items


_ML100K_GENRES = (
    "unknown Action Adventure Animation Children's Comedy Crime Documentary Drama Fantasy "
    "Film-Noir Horror Musical Mystery Romance Sci-Fi Thriller War Western"
).split()


def _load_ml100k_original(path: Path) -> list[Item]:
    """The GroupLens zip's ``u.item`` (latin-1, ``|``-separated, 19 genre flags)."""
    counts = Counter()
    if (path / "u.data").is_file():
        counts = _count_column((path / "u.data").read_text("latin-1").splitlines(), 1, "\t")
    items = []
    for line in (path / "u.item").read_text("latin-1").splitlines():
        cells = line.split("|")
        if len(cells) < 5 + len(_ML100K_GENRES):
            continue
        title, year = split_year(cells[1])
        flags = cells[5 : 5 + len(_ML100K_GENRES)]
        genres = [g for g, f in zip(_ML100K_GENRES, flags, strict=True) if f == "1"]
        items.append(_movie(cells[0], title, genres, year, counts[cells[0]]))
    return items
