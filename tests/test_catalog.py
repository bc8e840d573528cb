"""Catalog loaders on real files: ML-100K (recbole), ml-latest-small, small JSONL/CSV files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genrec.data.catalog_files import load_catalog, load_dataset, parse_mapping
from genrec.data.item import Item
from genrec.data.movielens import load_movielens_folder, ml100k_dir, split_year
from genrec.errors import CatalogError
from genrec.server.errors import http_status


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


# --------------------------------------------------------------------------- MovieLens


def test_ml100k_from_recbole_package():
    assert (ml100k_dir() / "ml-100k.item").is_file()
    items = load_dataset("ml-100k")
    assert len(items) == 1682
    by_id = {item.id: item for item in items}
    toy = by_id["1"]
    assert toy.title == "Toy Story"
    assert toy.attributes == {"year": 1995}
    assert toy.tags == ["Animation", "Children's", "Comedy"]
    assert toy.popularity == 452  # ratings of item 1 in ml-100k.inter
    assert sum(item.popularity or 0 for item in items) == 100_000
    assert "unknown" not in {tag for item in items for tag in item.tags}


def test_unknown_dataset_is_a_catalog_error():
    with pytest.raises(CatalogError, match="unknown dataset 'ml-1b'"):
        load_dataset("ml-1b")


def test_ml_latest_small_folder(ml_latest_small: Path):
    items = load_movielens_folder(ml_latest_small)
    assert len(items) == 9742
    by_title = {item.title: item for item in items}
    assert by_title["Toy Story 2"].attributes["year"] == 1999
    assert by_title["Toy Story 3"].attributes["year"] == 2010
    toy = next(item for item in items if item.id == "1")
    assert toy.title == "Toy Story" and toy.popularity == 215
    assert toy.tags == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    assert sum(item.popularity or 0 for item in items) == 100_836
    no_genres = next(item for item in items if item.id == "114335")  # "(no genres listed)"
    assert no_genres.tags == []
    # load_catalog finds the format from a folder on its own
    assert len(load_catalog(ml_latest_small).items) == 9742


@pytest.mark.parametrize(
    ("raw", "title", "year"),
    [
        ("Toy Story (1995)", "Toy Story", 1995),
        ("Runaway Brain (1995) ", "Runaway Brain", 1995),
        ("Assembly (Ji jie hao) (2007)", "Assembly (Ji jie hao)", 2007),
        ("Babylon 5", "Babylon 5", None),
        ("(500) Days of Summer (2009)", "(500) Days of Summer", 2009),
        ("1492", "1492", None),
    ],
)
def test_split_year(raw: str, title: str, year: int | None):
    assert split_year(raw) == (title, year)


def test_original_ml100k_u_item_in_latin1(tmp_path: Path):
    flags = ["0"] * 19
    flags[3] = flags[4] = "1"  # Animation, Children's
    line = "|".join(["1", "Café Story (1995)", "01-Jan-1995", "", "http://x", *flags])
    (tmp_path / "u.item").write_bytes((line + "\n").encode("latin-1"))
    (tmp_path / "u.data").write_text("7\t1\t5\t881250949\n8\t1\t3\t881250950\n")
    [item] = load_movielens_folder(tmp_path)
    assert (item.title, item.tags, item.popularity) == (
        "Café Story",
        ["Animation", "Children's"],
        2,
    )


def test_a_folder_that_is_not_movielens(tmp_path: Path):
    with pytest.raises(CatalogError, match="not a MovieLens folder"):
        load_catalog(tmp_path)


# --------------------------------------------------------------------------- JSONL


def test_jsonl_good_and_bad_rows_with_line_numbers(tmp_path: Path):
    path = write_jsonl(
        tmp_path / "c.jsonl",
        [
            {"id": 1, "title": "Alpha", "tags": "a|b", "year": 2001, "popularity": 3},
            {"id": "2", "title": "Beta", "attributes": {"lang": "en"}, "description": "B."},
            {"title": "No id"},
            {"id": "4"},
            "{not json",
            {"id": "5", "title": ["a", "list"]},
            "",
            {"id": "2", "title": "Beta again"},
            {"id": "9", "title": "Nested", "extra": {"x": 1}},
            "[1, 2]",
        ],
    )
    result = load_catalog(path)
    assert [item.id for item in result.items] == ["1", "2"]
    alpha, beta = result.items
    assert alpha.tags == ["a", "b"] and alpha.attributes == {"year": 2001}
    assert alpha.popularity == 3.0
    assert beta.attributes == {"lang": "en"} and beta.description == "B."
    errors = {e.line: e.message for e in result.errors}
    assert set(errors) == {3, 4, 5, 6, 8, 9, 10}
    assert errors[3] == "missing id"
    assert errors[4] == "missing title"
    assert "not valid JSON" in errors[5]
    assert errors[6].startswith("title")
    assert "duplicate id '2'" in errors[8] and "line 2" in errors[8]
    assert "attribute 'extra'" in errors[9]
    assert "JSON object" in errors[10]


def test_strict_makes_bad_rows_fatal(tmp_path: Path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"id": "1", "title": "A"}, {"id": "2"}])
    with pytest.raises(CatalogError) as info:
        load_catalog(path, strict=True)
    message = info.value.message
    assert str(path) in message and "line 2: missing title" in message and "--strict" in message


# --------------------------------------------------------------------------- CSV


def test_csv_with_a_column_mapping(tmp_path: Path):
    path = tmp_path / "books.csv"
    path.write_text(
        "bookId,name,genres,pages,rating,isbn,note\n"
        '10,"Dune, the novel",Sci-Fi|Classic,412,4.5,0441013597,"multi\nline"\n'
        "11,,Drama,100,3.0,123,\n"
        "12,Emma,Romance,abc,4.0,0000,\n"
    )
    result = load_catalog(path, mapping=parse_mapping(["id=bookId,title=name", "tags=genres"]))
    assert [item.id for item in result.items] == ["10", "12"]
    dune, emma = result.items
    assert dune.title == "Dune, the novel" and dune.tags == ["Sci-Fi", "Classic"]
    # numbers get their type so filters work; leading zeros stay text (an ISBN is not a number)
    assert dune.attributes == {
        "pages": 412,
        "rating": 4.5,
        "isbn": "0441013597",
        "note": "multi\nline",
    }
    assert emma.attributes["pages"] == "abc"
    [error] = result.errors
    assert error.line == 4 and error.message == "missing title"  # line 3 is the quoted newline


def test_tsv_and_explicit_format(tmp_path: Path):
    path = tmp_path / "items.tsv"
    path.write_text("id\ttitle\tcategory\n1\tOne\tbook\n")
    [item] = load_catalog(path).items
    assert item.category == "book"
    other = tmp_path / "items.txt"
    other.write_text("id,title\n1,One\n")
    assert load_catalog(other, fmt="csv").items[0].title == "One"


def test_mapping_to_a_missing_column(tmp_path: Path):
    path = tmp_path / "c.csv"
    path.write_text("movieId,name\n1,A\n")
    with pytest.raises(CatalogError, match="no column movie_id.*fix --map"):
        load_catalog(path, mapping={"id": "movie_id", "title": "name"})


def test_bad_map_syntax():
    with pytest.raises(CatalogError, match="FIELD=COLUMN"):
        parse_mapping(["id:movieId"])


# --------------------------------------------------------------------------- whole-source faults


def test_missing_file(tmp_path: Path):
    with pytest.raises(CatalogError) as info:
        load_catalog(tmp_path / "nope.jsonl")
    assert "nope.jsonl does not exist" in info.value.message
    assert http_status(info.value) == 400


def test_unknown_format(tmp_path: Path):
    path = tmp_path / "c.xml"
    path.write_text("<items/>")
    with pytest.raises(CatalogError, match=r"c\.xml.*--format"):
        load_catalog(path)
    with pytest.raises(CatalogError, match="unknown catalog format 'xml'"):
        load_catalog(path, fmt="xml")


@pytest.mark.parametrize("content", ["", "\n\n", "id,title\n"])
def test_empty_catalog(tmp_path: Path, content: str):
    path = tmp_path / "empty.csv"
    path.write_text(content)
    with pytest.raises(CatalogError, match="empty.csv"):
        load_catalog(path)


def test_non_utf8(tmp_path: Path):
    path = tmp_path / "latin.csv"
    path.write_bytes("id,title\n1,Ok\n2,Caf\xe9\n".encode("latin-1"))
    with pytest.raises(CatalogError) as info:
        load_catalog(path)
    assert "latin.csv is not UTF-8 (bad byte at line 3)" in info.value.message
    assert "iconv" in info.value.message


def test_utf8_bom_is_accepted(tmp_path: Path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffid,title\n1,Café\n".encode())
    assert load_catalog(path).items[0].title == "Café"


def test_embedding_text_rule():
    item = Item(
        id="1", title="Dune.", category="book", tags=["Sci-Fi", "Classic"], description="Spice"
    )
    assert item.embedding_text() == "Dune. book. Genres: Sci-Fi, Classic. Spice."
    assert Item(id="2", title="Plain").embedding_text() == "Plain."
