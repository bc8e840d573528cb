"""Training at scale, on small real inputs: the sparse, blocked itemknn counts exactly what a
brute-force count does; sparse and batched validation ranks equal the dense ones; the explanation
hook adds up to the scores; the log streams into arrays with bad rows reported by line; memory
is planned before any work (ease skipped, anything else refused, naming model and figure)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from genrec.data import log_columns
from genrec.data.interactions import read_log
from genrec.data.log_columns import read_columns
from genrec.errors import CatalogError
from genrec.evaluation.metrics import full_ranking_metrics
from genrec.settings import Settings
from genrec.training import collaborative, validation
from genrec.training.collaborative import EASE, EASEParams, ItemKNN, ItemKNNParams
from genrec.training.data import build, build_columns, sequences_from_log
from genrec.training.sequences import Sequences
from genrec.training.sequential import SASRec, SASRecParams
from genrec.training.train import plan_memory


@pytest.fixture(scope="module")
def seqs() -> list[list[int]]:
    rng = random.Random(3)
    return [[rng.randrange(40) for _ in range(rng.randint(0, 30))] for _ in range(60)]


def brute_force_similarity(seqs: list[list[int]], n: int, p: ItemKNNParams) -> np.ndarray:
    c = np.zeros((n, n))
    for s in seqs:
        for i in range(len(s)):
            for j in range(i + 1, min(len(s), i + p.window + 1) if p.window else len(s)):
                if s[i] != s[j]:
                    w = p.distance_decay ** (j - i - 1)
                    c[s[i], s[j]] += w
                    if not p.directional:
                        c[s[j], s[i]] += w
    row, col = c.sum(axis=1), c.sum(axis=0)
    return c / (row[:, None] ** p.alpha * col[None, :] ** (1 - p.alpha) + p.shrink)


@pytest.mark.parametrize(
    "params",
    [ItemKNNParams(), ItemKNNParams(window=3, directional=True), ItemKNNParams(window=0)],
)
def test_sparse_itemknn_counts_what_a_brute_force_count_does(seqs, params, monkeypatch) -> None:
    expected = brute_force_similarity(seqs, 40, params)
    one_block = ItemKNN.fit(seqs, 40, params)
    assert np.allclose(one_block.matrix.toarray(), expected, rtol=1e-5, atol=1e-7)
    monkeypatch.setattr(collaborative, "BLOCK_PAIRS", 50)  # many blocks of a few items
    blocked = ItemKNN.fit(Sequences.from_lists(seqs), 40, params)
    assert (blocked.matrix != one_block.matrix).nnz == 0


def test_itemknn_prunes_to_max_entries_per_item(seqs) -> None:
    full = ItemKNN.fit(seqs, 40, ItemKNNParams())
    assert full.neighbours == 0 and full.matrix.getnnz(axis=1).max() > 5
    pruned = ItemKNN.fit(seqs, 40, ItemKNNParams(max_entries=200))  # 200 // 40 = 5 a row
    assert pruned.neighbours == 5
    kept = pruned.matrix.getnnz(axis=1)
    assert kept.max() <= 5 + 3  # ties at the cut-off are kept
    # What is kept is each row's best: every kept value is at least the row's 5th best.
    dense = full.matrix.toarray()
    for r in range(40):
        if kept[r]:
            fifth = np.sort(dense[r])[::-1][min(4, kept[r] - 1)]
            assert pruned.matrix[r].data.min() >= fifth - 1e-9


@pytest.mark.parametrize("model", ["itemknn", "itemknn-directional", "itemknn-pruned", "ease"])
def test_contributions_add_up_to_the_scores(seqs, model) -> None:
    """Also through both of itemknn's ways to read the terms: the candidates' rows when the
    similarity is symmetric (undirected, unpruned), else the history's rows."""
    if model.startswith("itemknn"):
        params = ItemKNNParams(
            history_len=6,
            recency=0.8,
            directional=model.endswith("directional"),
            neighbours=3 if model.endswith("pruned") else 0,
        )
        m = ItemKNN.fit(seqs, 40, params)
        assert m.symmetric == (model == "itemknn")
        if m.symmetric:
            assert np.allclose(m.matrix.toarray(), m.matrix.toarray().T, rtol=1e-6)
    else:
        m = EASE.fit(seqs, 40, EASEParams(l2=5.0))
    history = [3, 7, 3, 12, 30, 7, 1, 9, 9]  # repeats, and longer than history_len
    items = [0, 5, 9, 17, 39, 3]
    hist, terms = m.contributions(history, items)
    assert terms.dtype == np.float32 and terms.shape == (len(hist), len(items))
    assert len(set(hist.tolist())) == len(hist)
    if model.startswith("itemknn"):  # only the last 6 items score
        assert set(hist.tolist()) == {12, 30, 7, 1, 9}
    scores = m.scores([history])[0][items]
    assert np.allclose(terms.sum(axis=0), scores, rtol=1e-5, atol=1e-6)
    assert np.abs(scores).sum() > 0


def test_sparse_and_batched_ranks_equal_the_dense_ones() -> None:
    rng = np.random.default_rng(1)
    for _ in range(10):
        dense = rng.integers(-2, 4, (50, 30)).astype(np.float32)
        dense[rng.random(dense.shape) < 0.6] = 0  # many ties at 0, some negative scores
        hist = [list(rng.choice(30, rng.integers(0, 8))) for _ in range(50)]
        targets = rng.integers(0, 30, 50)
        a = full_ranking_metrics(dense, hist, targets)
        b = full_ranking_metrics(sp.csr_matrix(dense), hist, targets)
        assert a == pytest.approx(b, abs=1e-12)
    # popularity without tiling the matrix
    pop = rng.integers(0, 5, 30).astype(np.float32)
    tiled = full_ranking_metrics(np.tile(pop, (50, 1)), hist, targets)
    assert validation.popularity_metrics(pop, hist, targets, (1, 5, 10, 20)) == pytest.approx(
        tiled, abs=1e-12
    )


def test_validation_in_batches_equals_one_dense_batch(seqs, monkeypatch) -> None:
    train, targets, _ = Sequences.from_lists([s for s in seqs if len(s) >= 2]).drop_last()
    model = ItemKNN.fit(train, 40)
    want = full_ranking_metrics(model.scores(train), train, targets)
    monkeypatch.setattr(validation, "BATCH_CELLS", 7 * 40)  # batches of 7 users
    got, lists = validation.rank_users(
        model, train, targets, (1, 5, 10, 20), lists_for=np.array([0, 8]), pool=10
    )
    assert got == pytest.approx(want, abs=1e-12)
    assert set(lists) == {0, 8} and all(len(v) <= 10 for v in lists.values())
    scores = model.scores(train[8:9])[0]
    best = [i for i, _ in lists[8]]
    assert all(i not in set(train[8].tolist()) for i in best)
    assert scores[best[0]] == scores[[i for i in range(40) if i not in set(train[8])]].max()


def test_sequences_arrays() -> None:
    s = Sequences.from_lists([[1, 2, 3], [], [4], [5, 6]])
    assert [x.tolist() for x in s] == [[1, 2, 3], [], [4], [5, 6]]
    assert [x.tolist() for x in s[1:4]] == [[], [4], [5, 6]]
    assert [x.tolist() for x in s.take(np.array([3, 0]))] == [[5, 6], [1, 2, 3]]
    assert [x.tolist() for x in s.tail(2)] == [[2, 3], [], [4], [5, 6]]
    train, last, rows = s.drop_last()
    assert [x.tolist() for x in train] == [[1, 2], [5]] and last.tolist() == [3, 6]
    assert rows.tolist() == [0, 3]
    with pytest.raises(ValueError, match=r"seqs\[3\]"):
        s.check(6, "seqs")


@pytest.mark.parametrize("block", [8 << 20, 40])  # one block; blocks of a few lines
def test_log_streams_into_columns_with_bad_rows_by_line(tmp_path: Path, block, monkeypatch) -> None:
    monkeypatch.setattr(log_columns, "BLOCK_BYTES", block)
    log = tmp_path / "log.csv"
    log.write_text(
        "user_id,item_id,timestamp\n"
        "u1,50,3\n"
        "u1,172,1\n"
        "u2,181\n"  # line 4: a column short
        "u2,1,2024-01-02T03:04:05Z\n"
        "u2,50,yesterday\n"  # line 6: bad timestamp
        ",50,4\n"  # line 7: no user
        "u1,1,2\n"
        "u2,nope,5\n"
    )
    cols = read_columns(log)
    assert cols.bad_rows == 3 and len(cols) == 5
    assert [e.split(":")[1] for e in cols.errors] == ["4", "6", "7"]
    assert cols.users.dtype == np.int32 and cols.timestamps.dtype == np.float64
    data = build_columns(cols, ["1", "50", "172", "181"])
    # u1's items by timestamp; the unknown item counted and named
    assert data.users == ["u1", "u2"]
    assert [[data.item_ids[i] for i in s] for s in data.sequences] == [["172", "1", "50"], ["1"]]
    assert data.stats["unknown_item_interactions"] == 1
    assert data.stats["unknown_item_examples"] == ["nope"]
    with pytest.raises(CatalogError, match="bad row: .*:4:"):
        read_columns(log, strict=True)


def test_columns_build_what_the_row_reader_builds() -> None:
    rows = read_log(None, "ml-100k")
    ids = sorted({x.item for x in rows.interactions})[:-50]  # some items not in the catalog
    a = build(sequences_from_log(rows.interactions), ids)
    b = build_columns(read_columns(None, "ml-100k"), ids)
    assert a.item_ids == b.item_ids and a.users == b.users and a.stats == {**b.stats, "source": ""}
    assert np.array_equal(a.sequences.items, b.sequences.items)
    assert a.fingerprint() == b.fingerprint()


def test_memory_is_planned_before_any_work(tmp_path: Path) -> None:
    data = build(
        {f"u{u}": [str(i) for i in range(u, u + 30)] for u in range(200)}, map(str, range(300))
    )
    roomy = Settings(home=tmp_path, train_memory_gb=64)
    kept, plan = plan_memory(roomy, data, ["itemknn", "ease", "sasrec"], None)
    assert kept == ["itemknn", "ease", "sasrec"] and plan["budget_gb"] == 64
    # ease's n x n matrices: 229 items need ~1.5 MB; a budget below that skips it, saying so
    small = Settings(home=tmp_path, train_memory_gb=0.25)
    kept, plan = plan_memory(
        small.model_copy(update={"train_memory_gb": 1e-3}), data, ["ease"], None
    )
    assert kept == [] and "ease skipped" in plan["skipped"]["ease"]
    with pytest.raises(CatalogError) as info:
        plan_memory(small, data, ["itemknn", "sasrec"], None)
    assert "training itemknn" in info.value.message or "training sasrec" in info.value.message
    assert "GB" in info.value.message and info.value.code == "insufficient_memory"


def test_sasrec_trains_with_a_sampled_softmax_above_its_threshold(seqs) -> None:
    params = SASRecParams(
        hidden=16,
        max_len=20,
        max_epochs=2,
        full_softmax_items=10,
        negatives=8,
        sampled_batch_size=16,
    )
    train, targets, _ = Sequences.from_lists([s for s in seqs if len(s) >= 2]).drop_last()
    model, report = SASRec.fit(train, 40, params, validation=(train, targets), seed=0)
    assert report["loss"].startswith("sampled softmax") and report["epochs"] == 2
    assert np.isfinite(model.item_vectors()).all()
    full, report = SASRec.fit(train, 40, SASRecParams(hidden=16, max_len=20, max_epochs=1))
    assert report["loss"] == "full"
