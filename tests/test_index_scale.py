"""The catalog read path as it runs for catalogs too big to mirror whole (forced here on ML-100K
by lowering ``max_mirrored`` on one index): the LRU item cache, title lookup through the catalog
summary's hashes, popularity with filters, and remembered filter matches."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from genrec.data.catalog_files import load_dataset
from genrec.embeddings import Embedder
from genrec.index import CatalogIndex
from genrec.index.filtered import FilteredVectors, store_vectors
from genrec.index.summary import Summary
from genrec.retrieval import RetrievalQuery
from genrec.retrieval.popular import PopularRetriever
from genrec.settings import Settings


@pytest.fixture(scope="module")
def big(ml100k_index: CatalogIndex, settings: Settings, embedder: Embedder) -> CatalogIndex:
    """The ML-100K collection read as a big catalog: nothing mirrored whole, a small cache."""
    index = CatalogIndex(settings, ml100k_index.name, embedder)
    index.mirror.max_mirrored = 100
    index.mirror.cache_items = 50
    index.freshness_s = 3600.0
    return index


def test_items_come_from_chroma_and_a_bounded_cache(big: CatalogIndex):
    loaded = {item.id: item for item in load_dataset("ml-100k")}
    got = big.get(["181", "nope", "1", "267"])
    assert [item.id for item in got] == ["181", "1", "267"]
    assert all(item == loaded[item.id] for item in got)
    big.get([str(i) for i in range(1, 200)])
    state = big.mirror.describe()
    assert state["mirrored_items"] == 0
    assert state["cached_items"] == 50  # least recently used out
    assert big.get(["199"])[0] == loaded["199"]  # a cached one


def test_recent_vectors_are_held_read_only_and_bounded(big: CatalogIndex):
    """A history's vectors are read from Chroma once, then from memory (shared, so read-only),
    at most ``cache_vectors`` of them; a write in this process drops them."""
    big.mirror.cache_vectors = 3
    big.mirror.vectors_budget = 0  # no mapped vectors: this is the path without them
    big.mirror.forget()
    big.mirror.summary()
    try:
        first = big.vectors(["1", "2", "nope"])
        assert sorted(first) == ["1", "2"] and not first["1"].flags.writeable
        assert np.array_equal(first["1"], big.store.vectors(["1"])["1"])
        fetch = big.store.vectors
        big.store.vectors = None  # type: ignore[method-assign]  # would fail if Chroma were asked
        try:
            again = big.vectors(["2", "1"])
        finally:
            del big.store.vectors
        assert again["1"] is first["1"] and again["2"] is first["2"]
        big.vectors(["3", "4", "5"])
        assert big.mirror.describe()["cached_vectors"] == 3  # least recently used out
        big.mirror.forget()  # what the writer does after writing
        assert big.mirror.describe()["cached_vectors"] == 0
        assert np.array_equal(big.vectors(["1"])["1"], fetch(["1"])["1"])
    finally:
        big.mirror.cache_vectors = 20_000
        big.mirror.vectors_budget = 2 * 2**30
        big.mirror.forget()


def test_the_summary_maps_every_vector_from_a_file_of_its_version(
    big: CatalogIndex, settings: Settings, embedder: Embedder
):
    """A big catalog's vectors are written once per catalog version beside the summary and
    memory-mapped: a history's vectors and a filter's rows are read without Chroma."""
    summary = big.mirror.summary()
    assert summary.vectors is not None and summary.vectors.shape == (1682, 384)
    assert big.mirror.describe()["mapped_vectors"] == 1682
    files = list((settings.home / "summaries" / big.name).glob("*.vectors.npy"))
    assert len(files) == 1
    want = big.store.vectors(["1", "50", "1682"])
    fetch = big.store.vectors
    big.store.vectors = None  # type: ignore[method-assign]  # would fail if Chroma were asked
    try:
        got = big.vectors(["1", "nope", "50", "1682"])
        ids, rows = big.mirror.vector_rows(["1682", "nope", "50"])  # type: ignore[misc]
    finally:
        del big.store.vectors
    assert sorted(got) == ["1", "1682", "50"] and not got["1"].flags.writeable
    assert all(np.array_equal(got[i], want[i]) for i in want)
    assert ids == ["1682", "50"] and np.array_equal(rows, np.stack([want["1682"], want["50"]]))
    assert fetch(["1"])  # (the store itself still answers)

    other = CatalogIndex(settings, big.name, embedder)  # the next replica maps the same file
    other.mirror.max_mirrored = 100
    other.mirror.files.write_vectors = None  # type: ignore[method-assign]  # would fail if written
    assert np.array_equal(other.mirror.summary().vectors, summary.vectors)

    off = settings.model_copy(update={"mapped_vectors": False})  # GENREC_MAPPED_VECTORS=0
    unmapped = CatalogIndex(off, big.name, embedder)
    unmapped.mirror.max_mirrored = 100
    assert unmapped.mirror.summary().vectors is None
    assert np.array_equal(unmapped.vectors(["50"])["50"], want["50"])  # from Chroma


def test_titles_resolve_through_the_summary(big: CatalogIndex):
    assert big.resolve("  star WARS ").id == "50"
    assert big.resolve("The Godfather").id == "127"  # stored as "Godfather, The"
    assert big.resolve("Godfather, The (1972)").id == "127"
    assert big.resolve("A movie that is not there") is None
    assert big.mirror.describe()["summary_mib"] > 0


def test_popular_reads_only_the_top_and_honours_filters(big: CatalogIndex):
    items = load_dataset("ml-100k")
    order = sorted(items, key=lambda it: (-(it.popularity or 0), int(it.id)))
    popular = PopularRetriever(big)
    top = popular.retrieve(RetrievalQuery(text="", history=(), k=5, exclude=frozenset({"50"})))
    assert [c.item.id for c in top] == [it.id for it in order if it.id != "50"][:5]
    old = {"year": {"$lt": 1950}}  # a filter few items pass: several chunks of the ranking
    got = popular.retrieve(RetrievalQuery(text="", history=(), k=30, where=old))
    want = [it.id for it in order if it.attributes.get("year", 9999) < 1950][:30]
    assert [c.item.id for c in got] == want
    assert [c.score for c in got] == sorted((c.score for c in got), reverse=True)


def test_first_matching_keeps_the_ranking_order(big: CatalogIndex):
    ranked = [str(i) for i in range(1682, 0, -1)]
    comedy = {"tags": {"$contains": "Comedy"}}
    items = {it.id: it for it in load_dataset("ml-100k")}
    got = big.first_matching(ranked, comedy, 700)
    want = [i for i in ranked if "Comedy" in items[i].tags]
    assert got == want[:700]  # fewer than 700 comedies: every one, over several chunks
    assert big.first_matching(ranked, {"year": 1800}, 5) == []
    assert big.allowed(comedy) is big.allowed(dict(comedy))  # remembered per distinct filter


def _held_filters_off(index: CatalogIndex) -> None:
    index._filtered.max_items = 0  # every filter goes to the store: its over-fetch is tested


def test_filtered_search_over_fetch_matches_chromas_own_filter(big: CatalogIndex):
    vector = big.vectors(["50"])["50"]
    for held in (True, False):  # exact among the filter's vectors held in process; the store's
        if not held:
            _held_filters_off(big)
        try:
            for where in ({"tags": {"$contains": "Sci-Fi"}}, {"year": {"$lt": 1940}}):
                if held:  # a first use is answered by the store while the vectors are fetched
                    big.search_vector(vector, k=10, where=where)
                    big._filtered.settle()
                    assert big.allowed(where) in big._filtered._held
                mine = [(h.item.id, h.score) for h in big.search_vector(vector, k=10, where=where)]
                chroma = big.store.query(vector, 10, where)  # Chroma filtering in SQLite
                assert [i for i, _ in mine] == [i for i, _ in chroma]
                assert [s for _, s in mine] == pytest.approx([1.0 - d for _, d in chroma], abs=1e-4)
        finally:
            big._filtered.max_items = 60_000


def test_held_filter_vectors_are_reused_and_bounded(big: CatalogIndex):
    vector = big.vectors(["50"])["50"]
    where = {"year": {"$lt": 1950}}
    big._filtered.clear()
    first = [h.item.id for h in big.search_vector(vector, k=5, where=where)]  # the store's
    allowed = big.allowed(where)
    big._filtered.settle()  # fetched once in the background, held for the next request
    assert allowed in big._filtered._held
    assert [h.item.id for h in big.search_vector(vector, k=5, where=where)] == first
    big._filtered.budget_bytes = 1  # a filter too big for the budget is not held: the store asks
    try:
        big._filtered.clear()
        assert [h.item.id for h in big.search_vector(vector, k=5, where=where)] == first
        big._filtered.settle()
        assert not big._filtered._held and not big._filtered._loading  # nor fetched again
    finally:
        big._filtered.budget_bytes = 512 << 20


def test_a_filter_far_from_the_query_is_searched_among_its_ids(big: CatalogIndex):
    vector = big.vectors(["50"])["50"]  # Star Wars, far from 1930s films
    big.store.MAX_OVERFETCH = 40  # the over-fetch cannot find them: the ID-restricted query
    _held_filters_off(big)
    try:
        where = {"year": {"$lt": 1935}}
        mine = [h.item.id for h in big.search_vector(vector, k=5, where=where)]
    finally:
        del big.store.MAX_OVERFETCH
        big._filtered.max_items = 60_000
    assert mine == [i for i, _ in big.store.query(vector, 5, where)]


def test_the_summary_is_kept_on_disk_for_the_next_process(
    big: CatalogIndex, settings: Settings, embedder: Embedder
):
    first = big.mirror.summary()
    files = list((settings.home / "summaries").glob(f"{big.name}-*.npz"))
    assert len(files) == 1
    other = CatalogIndex(settings, big.name, embedder)
    other.mirror.max_mirrored = 100
    other.mirror._scan = None  # type: ignore[method-assign]  # would fail if it scanned again
    second = other.mirror.summary()
    assert second.ids == first.ids
    assert all((a == b).all() for a, b in zip(second.exact, first.exact, strict=True))
    assert other.resolve("The Godfather").id == "127"
    assert second.records is not None  # the items' metadata came back with it
    assert other.get(["127"])[0] == big.get(["127"])[0]


def test_a_held_summary_serves_items_without_chroma(big: CatalogIndex):
    loaded = {item.id: item for item in load_dataset("ml-100k")}
    summary = big.mirror.summary()
    assert summary.records is not None
    fetch = big.store.items
    big.store.items = None  # type: ignore[method-assign]  # would fail if Chroma were asked
    try:
        got = big.get(["181", "nope", "1", "1682", "267"])
    finally:
        del big.store.items
    assert [item.id for item in got] == ["181", "1", "1682", "267"]
    assert all(item == loaded[item.id] for item in got)
    assert fetch(["181"])["181"] == got[0]


def test_metadata_over_the_budget_keeps_only_the_cache(big: CatalogIndex):
    big.mirror.records_budget = 1000  # a few items' JSON: the scan drops it
    try:
        rows = big.mirror._scan()
    finally:
        big.mirror.records_budget = 256 * 2**20
    assert len(rows) == 1682 and all(r[3] is None for r in rows)
    assert Summary.build(rows).records is None


def test_a_filter_fetch_begun_before_a_write_is_not_kept_and_a_failed_one_retries(
    big: CatalogIndex,
):
    """The background fetch of a filter's vectors, through the store's real fetch: one begun
    before a catalog write (clear) is dropped; one that fails is logged, not held, and the next
    use of the filter fetches again."""
    filtered = FilteredVectors(store_vectors(big.store))
    allowed = big.allowed({"year": {"$lt": 1950}})
    vector = big.vectors(["50"])["50"]
    gate = threading.Event()
    fetch = filtered._fetch

    def slow(ids):  # the real fetch, held back until the write below has happened
        gate.wait(30)
        return fetch(ids)

    filtered._fetch = slow
    assert filtered.nearest(allowed, vector, 5) is None  # not held yet: the caller asks the store
    filtered.clear()  # what a catalog write does
    gate.set()
    filtered.settle()
    assert not filtered._held

    def failing(ids):
        raise OSError("the store went away")

    filtered._fetch = failing
    assert filtered.nearest(allowed, vector, 5) is None
    filtered.settle()
    assert not filtered._held and not filtered._loading
    filtered._fetch = fetch  # the next use fetches again, and then answers from memory
    assert filtered.nearest(allowed, vector, 5) is None
    filtered.settle()
    got = filtered.nearest(allowed, vector, 5)
    assert got is not None and len(got) == 5
    assert [i for i, _ in got] == [
        h.item.id for h in big.search_vector(vector, k=5, where={"year": {"$lt": 1950}})
    ]


def test_a_new_catalog_version_maps_a_new_file_and_removes_the_old(big: CatalogIndex):
    summary = big.mirror.summary()
    files = big.mirror.files
    folder = files.folder / big.name
    before = sorted(folder.glob("*.vectors.npy"))
    assert len(before) == 1
    col = big.store.collection()
    mapped = files.mapped_vectors("next-version", summary, col, big.mirror.vectors_budget)
    after = sorted(folder.glob("*.vectors.npy"))
    assert len(after) == 1 and after != before and "next-version" in after[0].name
    assert mapped is not None and np.array_equal(mapped, summary.vectors)
    assert files.mapped_vectors("v3", summary, col, budget=1000) is None  # over the budget
    assert sorted(folder.glob("*.vectors.npy")) == after  # nothing written for it
