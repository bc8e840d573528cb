"""genrec.retrieval.item_search: SASRec's top items by inner product, searched in process."""

from __future__ import annotations

import numpy as np
import pytest

from genrec.retrieval.item_search import GATHER_UP_TO, ItemSearch


def clustered(n: int, dim: int = 32, groups: int = 40, seed: int = 0) -> np.ndarray:
    """Unnormalised vectors around a few directions, as a trained item table's are."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((groups, dim)) * 2
    table = centres[rng.integers(0, groups, n)] + rng.standard_normal((n, dim))
    return (table * rng.uniform(0.5, 2.0, (n, 1))).astype(np.float32)


def exact_top(table: np.ndarray, user: np.ndarray, n: int, rows=None) -> list[int]:
    rows = np.arange(len(table)) if rows is None else np.asarray(rows)
    scores = table[rows] @ user
    return [int(rows[i]) for i in np.argsort(-scores, kind="stable")[:n]]


@pytest.fixture(scope="module")
def table() -> np.ndarray:
    return clustered(10_000)


@pytest.fixture(scope="module")
def users(table: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(1)
    picks = rng.integers(0, len(table), (40, 3))
    return table[picks].mean(axis=1)  # a user near what they had


def test_small_tables_are_searched_exactly(table, users):
    search = ItemSearch(table)
    assert search.exact
    for user in users:
        got = search.top(user, 50)
        assert [i for i, _ in got] == exact_top(table, user, 50)
        assert np.allclose([s for _, s in got], table[[i for i, _ in got]] @ user, atol=1e-4)
    assert search.top(users[0], 0) == []
    assert len(search.top(users[0], 10_000)) == len(table)  # n beyond the table: all of it


def test_cells_find_nearly_all_of_the_exact_top(table, users):
    search = ItemSearch(table, exact_up_to=1_000)  # force the inverted-file index
    assert not search.exact and search.nprobe >= 1
    recall = np.mean(
        [
            len({i for i, _ in search.top(u, 100)} & set(exact_top(table, u, 100))) / 100
            for u in users
        ]
    )
    assert recall >= 0.9, recall
    # the scores it returns are the true inner products, best first
    got = search.top(users[0], 20)
    assert np.allclose([s for _, s in got], table[[i for i, _ in got]] @ users[0], atol=1e-4)
    assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)


@pytest.mark.parametrize("exact_up_to", [50_000, 1_000])
def test_a_filter_keeps_to_its_items(table, users, exact_up_to):
    search = ItemSearch(table, exact_up_to=exact_up_to)
    rng = np.random.default_rng(2)
    few = rng.choice(len(table), GATHER_UP_TO // 2, replace=False)
    narrow = rng.choice(len(table), len(table) // 2, replace=False)  # 1 in 2: nprobe x 2
    broad = rng.choice(len(table), len(table) - 100, replace=False)
    for rows in (few, narrow, broad):
        only = search.subset(rows)
        assert (only.params is None) == (len(rows) <= GATHER_UP_TO)  # else masked in the index
        for user in users[:10]:
            got = [i for i, _ in search.top(user, 30, only)]
            assert set(got) <= set(rows.tolist()) and len(got) == 30
            want = exact_top(table, user, 30, rows)
            if search.exact or only.params is None:
                assert got == want
            else:
                assert len(set(got) & set(want)) >= 27
    # a filter with fewer items than asked for returns them all; none matching, nothing
    few = search.subset(np.array([3, 1, 2]))
    assert sorted(i for i, _ in search.top(users[0], 10, few)) == [1, 2, 3]
    assert search.top(users[0], 10, search.subset(np.array([], dtype=np.int64))) == []


def test_a_narrow_filter_probes_more_cells_and_keeps_the_recall():
    table = clustered(60_000, seed=3)
    search = ItemSearch(table)  # 60,000 > the exact bound: cells
    assert not search.exact
    rows = np.random.default_rng(4).choice(len(table), len(table) // 12, replace=False)
    only = search.subset(rows)
    assert only.params is not None and only.params.nprobe == min(
        search.nprobe * 12, search._index.nlist
    )
    users = table[np.random.default_rng(5).integers(0, len(table), 20)]
    recall = np.mean(
        [
            len({i for i, _ in search.top(u, 100, only)} & set(exact_top(table, u, 100, rows)))
            / 100
            for u in users
        ]
    )
    assert recall >= 0.9, recall
