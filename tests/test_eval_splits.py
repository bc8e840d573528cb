"""The k-core filter and chronological leave-one-out, on a hand-made log and on the real data."""

from __future__ import annotations

from pathlib import Path

import pytest

from genrec.data.interactions import Interaction
from genrec.errors import CatalogError
from genrec.evaluation.datasets import load_eval_dataset, read_cases_jsonl
from genrec.evaluation.splits import (
    k_core,
    leave_one_out,
    training_counts,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ML_SMALL = DATA / "ml-latest-small"
needs_ml_small = pytest.mark.skipif(
    not (ML_SMALL / "ratings.csv").is_file(), reason=f"{ML_SMALL} is not available"
)


def log(*rows: tuple[str, str, float]) -> list[Interaction]:
    return [Interaction(u, i, t) for u, i, t in rows]


def test_leave_one_out_sorts_by_time_and_keeps_log_order_on_ties():
    rows = log(
        ("u", "c", 30),
        ("u", "a", 10),
        ("u", "d", 30),  # same second as c, later in the log: after c
        ("u", "b", 20),
        ("v", "x", 5),
        ("v", "y", 1),
    )
    test = {c.user_id: c for c in leave_one_out(rows, "test")}
    assert test["u"].history == ("a", "b", "c") and test["u"].target == "d"
    assert test["v"].history == ("y",) and test["v"].target == "x"
    val = {c.user_id: c for c in leave_one_out(rows, "validation")}
    assert val["u"].history == ("a", "b") and val["u"].target == "c"
    assert "v" not in val  # two interactions cannot give history + validation + test


def test_k_core_iterates_until_stable():
    # k=2. Pass 1 drops u4 (one item); that leaves i3 with one rater, so pass 2 drops (u3, i3);
    # that leaves u3 with one item, so pass 3 drops (u3, i2). A single pass would keep u3.
    dense = [(u, i, 0) for u in ("u1", "u2") for i in ("i1", "i2")]
    rows = log(*dense, ("u3", "i2", 0), ("u3", "i3", 0), ("u4", "i3", 0))
    kept = k_core(rows, 2)
    assert [(x.user, x.item) for x in kept] == [(u, i) for u, i, _ in dense]


def test_k_core_cascade_removes_everything_weak():
    rows = log(("a", "1", 0), ("a", "2", 0), ("b", "1", 0), ("b", "2", 0), ("c", "1", 0))
    # At k=3 item 1 has 3 raters, but every user has < 3 items: all users go, then all items.
    assert k_core(rows, 3) == []
    assert len(k_core(rows, 2)) == 4  # c (1 item) goes; items 1 and 2 keep 2 raters each


def test_training_counts_never_count_targets():
    rows = log(("u", "a", 1), ("u", "b", 2), ("v", "b", 1), ("v", "a", 2))
    counts = training_counts(leave_one_out(rows))
    assert counts == {"a": 1, "b": 1}


@needs_ml_small
def test_five_core_on_ml_latest_small_matches_the_paper():
    ds = load_eval_dataset("movielens", path=ML_SMALL)
    assert ds.stats["users"] == 610 and len(ds.cases) == 610
    assert ds.stats["items"] == 3650 and len(ds.items) == 3650
    assert ds.stats["raw_interactions"] == 100_836
    case = next(c for c in ds.cases if c.user_id == "1")
    assert case.target not in case.history and len(case.history) >= 4
    assert all(h in ds.items for h in case.history)


def test_too_few_interactions_after_filtering(tmp_path):
    (tmp_path / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.0,1\n1,2,4.0,2\n2,1,3.0,3\n"
    )
    (tmp_path / "movies.csv").write_text(
        "movieId,title,genres\n1,A (1990),Drama\n2,B (1991),Drama\n"
    )
    with pytest.raises(CatalogError, match="no user is left"):
        load_eval_dataset("movielens", path=tmp_path)


def test_missing_folder_and_unknown_format(tmp_path):
    with pytest.raises(CatalogError, match="not found"):
        load_eval_dataset("movielens", path=tmp_path / "nope")
    with pytest.raises(CatalogError, match="unknown dataset format"):
        load_eval_dataset("parquet", path=tmp_path)


def test_jsonl_cases_name_the_bad_line(tmp_path):
    good = '{"user_id": 1, "history": ["a", "b"], "target": "c"}\n'
    p = tmp_path / "cases.jsonl"
    p.write_text(good + '{"user_id": 2, "history": [], "target": "c"}\n')
    with pytest.raises(CatalogError, match=r"cases.jsonl:2"):
        read_cases_jsonl(p)
    p.write_text(good)
    cases = read_cases_jsonl(p)
    assert cases[0].user_id == "1" and cases[0].history == ("a", "b")
    catalog = tmp_path / "cat.jsonl"
    catalog.write_text('{"id": "a", "title": "A"}\n{"id": "b", "title": "B"}\n')
    with pytest.raises(CatalogError, match="not in the catalog"):
        load_eval_dataset("jsonl", path=p, catalog=catalog)
    catalog.write_text(catalog.read_text() + '{"id": "c", "title": "C"}\n')
    ds = load_eval_dataset("jsonl", path=p, catalog=catalog)
    assert len(ds.cases) == 1 and set(ds.items) == {"a", "b", "c"}


def test_ml100k_from_the_recbole_package():
    import importlib.util

    if importlib.util.find_spec("recbole") is None:
        pytest.skip("recbole (which ships ML-100K) is not installed")
    ds = load_eval_dataset("ml-100k", path=None)
    # ML-100K is already 20-core per user; the 5-core filter only drops rarely rated films.
    assert ds.stats["raw_interactions"] == 100_000 and ds.stats["users"] == 943
    assert ds.stats["items"] == len(ds.items) == 1349 and len(ds.cases) == 943
    assert all(c.target in ds.items and c.target not in c.history for c in ds.cases)
