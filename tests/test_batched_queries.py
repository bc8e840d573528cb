"""Concurrent nearest-neighbour queries share Chroma calls (genrec.index.batched_queries): each
query gets exactly what it would alone (its n rounded up for the store, then cut), errors reach
every query of their call, and nothing is left waiting."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from genrec.index import CatalogIndex
from genrec.index.batched_queries import BatchedQueries

RNG = np.random.default_rng(0)
ITEMS = RNG.standard_normal((500, 16)).astype(np.float32)


def exact(vectors: np.ndarray, n: int) -> list[list[tuple[str, float]]]:
    """A real search (exact, by dot product), slow enough that queries pile up meanwhile."""
    time.sleep(0.05)
    scores = vectors @ ITEMS.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :n]
    return [[(str(j), float(-s[j])) for j in row] for row, s in zip(order, scores, strict=True)]


def same(a: list[tuple[str, float]], b: list[tuple[str, float]]) -> bool:
    """The same neighbours in the same order, distances equal to float rounding (a matrix
    product of several rows may round differently from one row's)."""
    ids_equal = [i for i, _ in a] == [i for i, _ in b]
    return ids_equal and np.allclose([d for _, d in a], [d for _, d in b], atol=1e-5)


def test_queries_arriving_together_share_calls_and_get_their_own_answers():
    calls: list[tuple[int, int]] = []

    def search(vectors: np.ndarray, n: int) -> list[list[tuple[str, float]]]:
        calls.append((len(vectors), n))
        return exact(vectors, n)

    batched = BatchedQueries(search)
    queries = RNG.standard_normal((12, 16)).astype(np.float32)
    # n rounds up to a multiple of WIDTH (32): 5, 7 and 30 share calls; 40 goes in its own
    ns = [5, 7, 30, 40] * 3
    start = threading.Barrier(12)

    def one(i: int) -> list[tuple[str, float]]:
        start.wait()
        return batched.query(queries[i], ns[i])

    with ThreadPoolExecutor(12) as pool:
        got = list(pool.map(one, range(12)))
    for i, hits in enumerate(got):
        assert len(hits) == ns[i]
        assert same(hits, exact(queries[i : i + 1], ns[i])[0])
    assert {n for _, n in calls} <= {32, 64}  # the store is asked for the rounded width
    assert sum(size for size, _ in calls) == 12 and len(calls) < 12
    assert max(size for size, n in calls if n == 32) > 1  # different n shared a call
    assert same(batched.query(queries[0], 5), got[0])  # alone: straight through, as before


def test_an_error_reaches_every_query_of_its_call_and_the_next_call_works():
    batched = BatchedQueries(exact)
    start = threading.Barrier(6)
    good = RNG.standard_normal(16).astype(np.float32)
    bad = np.zeros(3, dtype=np.float32)  # the wrong dimension: the search itself fails

    def one(i: int) -> object:
        start.wait()
        try:
            return batched.query(bad if i % 2 else good, 4 if i % 2 else 3)
        except ValueError as exc:
            return exc

    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(one, range(6)))
    assert all(isinstance(g, ValueError) for g in got[1::2])
    assert all(same(g, exact(good[None], 3)[0]) for g in got[0::2])  # type: ignore[arg-type]
    assert same(batched.query(good, 3), got[0])  # type: ignore[arg-type]  # nothing stuck


def test_the_store_answers_concurrent_searches_as_it_answers_one(ml100k_index: CatalogIndex):
    """On the real Chroma collection: eight searches at once, each the same as alone."""
    ids = ["1", "50", "100", "181", "258", "300", "9", "12"]
    vectors = ml100k_index.vectors(ids)
    alone = [ml100k_index.store.query(vectors[i], 30, None) for i in ids]
    start = threading.Barrier(len(ids))

    def one(i: str) -> list[tuple[str, float]]:
        start.wait()
        return ml100k_index.store.query(vectors[i], 30, None)

    with ThreadPoolExecutor(len(ids)) as pool:
        together = list(pool.map(one, ids))
    assert all(same(a, b) for a, b in zip(alone, together, strict=True))


def test_a_bad_n_is_chromas_error_in_the_callers_thread(ml100k_index: CatalogIndex):
    vector = ml100k_index.vectors(["1"])["1"]
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever chromadb raises for it
        ml100k_index.store.query(vector, 0, None)
    assert ml100k_index.store.query(vector, 3, None)  # the store still answers
