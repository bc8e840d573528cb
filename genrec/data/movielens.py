"""MovieLens catalogs: ml-latest-small's ``movies.csv``, RecBole atomic ``*.item`` files (how the
recbole wheel ships ML-100K), and the original ML-100K ``u.item``. The year moves from the title
into ``attributes.year``; popularity is the number of ratings."""

from __future__ import annotations

import csv
import importlib.util
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from genrec.data.item import AttrValue, Item, open_text
from genrec.errors import CatalogError

_YEAR_RE = re.compile(r"\s*\((\d{4})(?:\s*[-–]\s*(?:\d{4})?)?\)\s*$")


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
        return load_recbole(path, recbole_items[0].stem)
    raise CatalogError(
        f"{path} is not a MovieLens folder: expected movies.csv, <name>.item or u.item in it"
    )


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
        _count_column(open_text(ratings).splitlines()[1:], 1, ",")
        if ratings.is_file()
        else Counter()
    )
    items = []
    for row in csv.DictReader(open_text(path / "movies.csv").splitlines()):
        title, year = split_year(row["title"])
        genres = (row.get("genres") or "").split("|")
        items.append(_movie(row["movieId"], title, genres, year, counts[row["movieId"]]))
    return items


def load_recbole(path: Path, name: str) -> list[Item]:
    """RecBole atomic files: tab-separated, typed headers like ``item_id:token``."""
    lines = open_text(path / f"{name}.item").splitlines()
    header = [h.split(":", 1)[0] for h in lines[0].split("\t")]
    col = {h: i for i, h in enumerate(header)}
    if "item_id" not in col:
        raise CatalogError(f"{path / (name + '.item')} has no item_id column; is it RecBole?")
    inter = path / f"{name}.inter"
    counts: Counter[str] = Counter()
    if inter.is_file():
        inter_lines = open_text(inter).splitlines()
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
