"""The Chroma-backed index with the real embedding model, on real MovieLens data."""

from __future__ import annotations

import numpy as np
import pytest

from genrec.data.catalog_files import load_dataset
from genrec.data.item import Item
from genrec.data.movielens import load_movielens_folder
from genrec.embeddings import Embedder
from genrec.errors import ConfigError, InvalidRequest, NotFound
from genrec.index import CatalogIndex, validate_where
from genrec.server.errors import http_status
from genrec.settings import Settings
from genrec.titles import title_key


def ids(hits) -> list[str]:
    return [hit.item.id for hit in hits]


# --------------------------------------------------------------------------- storage round trip


def test_items_round_trip_through_metadata(ml100k_index: CatalogIndex):
    loaded = {item.id: item for item in load_dataset("ml-100k")}
    assert ml100k_index.count() == 1682
    assert ml100k_index.complete
    got = ml100k_index.get(["181", "nope", "1", "267"])
    assert [item.id for item in got] == ["181", "1", "267"]  # order kept, unknown left out
    for item in got:
        assert item == loaded[item.id]


def test_resolve_by_id_title_and_normalised_title(ml100k_index: CatalogIndex):
    assert ml100k_index.resolve("50").title == "Star Wars"
    assert ml100k_index.resolve("  star WARS ").id == "50"
    assert ml100k_index.resolve("The Godfather").id == "127"  # stored as "Godfather, The"
    assert ml100k_index.resolve("Godfather, The (1972)").id == "127"
    assert ml100k_index.resolve("A movie that is not there") is None
    assert ml100k_index.resolve("") is None


def test_title_key_is_what_the_index_resolves_by():
    assert title_key("Godfather, The (1972)") == title_key("the  godfather")
    assert title_key("Birdcage, The") == "the birdcage"


# --------------------------------------------------------------------------- search quality


def test_star_wars_history_finds_its_sequels(ml100k_index: CatalogIndex):
    hits = ml100k_index.search(history=["50"], k=5)
    assert {"172", "181"} <= set(ids(hits)[:3])  # Empire Strikes Back, Return of the Jedi
    assert "50" not in ids(hits)
    assert all(0 < hit.score <= 1.0001 for hit in hits)
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)


def test_godfather_history_finds_part_ii(ml100k_index: CatalogIndex):
    assert "187" in ids(ml100k_index.search(history=["Godfather, The"], k=3))


def test_text_search_finds_the_title(ml100k_index: CatalogIndex):
    assert ids(ml100k_index.search("Toy Story", k=3))[0] == "1"


def test_search_vector_matches_text_search(ml100k_index: CatalogIndex):
    vector = ml100k_index.embed(["robots in space"])[0]
    assert len(vector) == 384
    by_vector = ml100k_index.search_vector(vector, k=10)
    assert ids(by_vector) == ids(ml100k_index.search("robots in space", k=10))


def test_recent_history_items_weigh_more(ml100k_index: CatalogIndex):
    star_wars, toy_story = "50", "1"
    vectors = ml100k_index.vectors([star_wars, toy_story])
    profile = ml100k_index.history_vector([star_wars, toy_story])  # Toy Story is the latest
    assert float(profile @ vectors[toy_story]) > float(profile @ vectors[star_wars])
    reversed_profile = ml100k_index.history_vector([toy_story, star_wars])
    assert float(reversed_profile @ vectors[star_wars]) > float(
        reversed_profile @ vectors[toy_story]
    )
    assert np.isclose(np.linalg.norm(profile), 1.0, atol=1e-5)


def test_text_and_history_together(ml100k_index: CatalogIndex):
    hits = ml100k_index.search("animated", history=["50", "172"], k=10)
    assert not {"50", "172"} & set(ids(hits))
    assert len(hits) == 10


def test_history_by_title_is_excluded_by_id(ml100k_index: CatalogIndex):
    hits = ml100k_index.search(history=["Star Wars", "Return of the Jedi"], k=10)
    assert not {"50", "181"} & set(ids(hits))


# --------------------------------------------------------------------------- filters, exclusions


def test_where_filters_hold(ml100k_index: CatalogIndex):
    old = ml100k_index.search("war movie", k=15, where={"year": {"$lt": 1960}})
    assert len(old) == 15 and all(hit.item.attributes["year"] < 1960 for hit in old)
    horror = ml100k_index.search("funny", k=10, where={"tags": {"$contains": "Horror"}})
    assert len(horror) == 10 and all("Horror" in hit.item.tags for hit in horror)
    both = ml100k_index.search(
        history=["1"],
        k=10,
        where={"$and": [{"tags": {"$contains": "Comedy"}}, {"popularity": {"$gte": 100}}]},
    )
    assert both and all("Comedy" in h.item.tags and h.item.popularity >= 100 for h in both)
    assert ml100k_index.search("anything", k=5, where={"year": {"$gt": 3000}}) == []


def test_exclusions_hold_and_k_is_still_filled(ml100k_index: CatalogIndex):
    first = ids(ml100k_index.search(history=["50"], k=10))
    hits = ml100k_index.search(history=["50"], k=10, exclude=first[:5])
    assert len(hits) == 10
    assert not set(first[:5]) & set(ids(hits))
    assert ids(hits)[:5] == first[5:]


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"history": ["50", "no-such-id"]}, "history"),
        ({"text": "x", "where": {"year": {"$between": [1, 2]}}}, "where"),
        ({"text": "x", "where": {"year": {"$gt": "1990"}}}, "where"),
        ({"text": "x", "where": "year > 1990"}, "where"),
        ({"text": "x", "where": {}}, "where"),
        ({"text": "x", "k": 0}, "k"),
        ({"text": "   "}, "query"),
        ({}, "query"),
    ],
)
def test_bad_requests_name_the_field(ml100k_index: CatalogIndex, kwargs: dict, param: str):
    with pytest.raises(InvalidRequest) as info:
        ml100k_index.search(**kwargs)
    assert info.value.param == param
    assert http_status(info.value) == 400


def test_unknown_history_message_lists_the_ids(ml100k_index: CatalogIndex):
    with pytest.raises(InvalidRequest, match="'no-such-id'"):
        ml100k_index.search(history=["no-such-id"])


def test_validate_where_can_name_another_field():
    with pytest.raises(InvalidRequest) as info:
        validate_where({"a": {"$nope": 1}}, param="filters")
    assert info.value.param == "filters"


# --------------------------------------------------------------------------- collections


def test_missing_collection(settings: Settings, embedder: Embedder):
    index = CatalogIndex(settings, "never-ingested", embedder)
    assert index.count() == 0 and not index.exists() and index.get(["1"]) == []
    assert index.resolve("1") is None
    with pytest.raises(NotFound, match="genrec ingest"):
        index.search("x")
    assert not index.exists()  # reading never creates it


def test_bad_collection_name(settings: Settings, embedder: Embedder):
    with pytest.raises(InvalidRequest) as info:
        CatalogIndex(settings, "x", embedder)
    assert info.value.param == "collection"


def test_collection_from_another_embedding_model_is_refused(settings: Settings, embedder: Embedder):
    index = CatalogIndex(settings, "other-model", embedder)
    index.upsert([Item(id="1", title="One")], progress=False)
    index.set_metadata(genrec_embedding_model="some/other-model")
    with pytest.raises(ConfigError, match="some/other-model"):
        CatalogIndex(settings, "other-model", embedder).search("one")
    index.drop()


def test_reserved_attribute_names_survive(settings: Settings, embedder: Embedder):
    index = CatalogIndex(settings, "odd-attributes", embedder)
    item = Item(id="1", title="T", attributes={"title": "shadow", "tags": 3, "year": 2000})
    index.upsert([item], progress=False)
    assert index.get(["1"]) == [item]
    assert index.search("T", k=1, where={"year": 2000})[0].item == item
    index.drop()


# --------------------------------------------------------------------------- ml-latest-small


@pytest.fixture(scope="module")
def latest_subset_index(ml_latest_small, settings: Settings, embedder: Embedder) -> CatalogIndex:
    """The 1,000 most-rated movies of ml-latest-small plus every Animation/Children title: the
    hard negatives for a Toy Story history. (The whole 9,742 take longer than the suite may.)"""
    items = load_movielens_folder(ml_latest_small)
    popular = sorted(items, key=lambda it: -(it.popularity or 0))[:1000]
    family = [it for it in items if {"Animation", "Children"} & set(it.tags)]
    chosen = {it.id: it for it in [*popular, *family]}
    assert {"1", "3114", "78499"} <= set(chosen)
    index = CatalogIndex(settings, "latest-subset", embedder)
    index.upsert(chosen.values(), progress=False)
    return index


def test_toy_story_history_finds_its_sequels(latest_subset_index: CatalogIndex):
    assert latest_subset_index.count() > 1000
    hits = latest_subset_index.search(history=["1"], k=5)
    assert {"3114", "78499"} <= set(ids(hits)[:3])  # Toy Story 2, Toy Story 3
    assert "1" not in ids(hits)


def test_duplicate_titles_resolve_to_the_most_popular(latest_subset_index: CatalogIndex):
    items = latest_subset_index.all_items()
    by_title: dict[str, list[Item]] = {}
    for item in items:
        by_title.setdefault(item.title.lower(), []).append(item)
    title, group = next((t, g) for t, g in sorted(by_title.items()) if len(g) > 1)
    best = max(group, key=lambda it: it.popularity or 0)
    assert latest_subset_index.resolve(title.upper()).id == best.id


# --------------------------------------------------------------------------- Chroma server


def test_http_client_against_a_real_chroma_server(
    chroma_server: str, settings: Settings, embedder: Embedder
):
    remote = settings.model_copy(update={"chroma_url": chroma_server})
    index = CatalogIndex(remote, "remote-ml100k", embedder)
    items = [it for it in load_dataset("ml-100k") if int(it.id) <= 300]
    report = index.upsert(items, progress=False)
    assert (report.added, report.complete) == (300, True)
    assert index.count() == 300
    again = index.upsert(items, progress=False)
    assert (again.written, again.unchanged) == (0, 300)
    hits = index.search(history=["50"], k=5, where={"year": {"$lt": 1990}})
    assert {"172", "181"} <= set(ids(hits))
    assert all(hit.item.attributes["year"] < 1990 for hit in hits)
    assert index.resolve("the empire strikes back").id == "172"
    # a second client on the same server sees the same collection
    assert CatalogIndex(remote, "remote-ml100k", embedder).get(["181"])[0].title == (
        "Return of the Jedi"
    )
    index.drop()


def test_unreachable_chroma_server(settings: Settings, embedder: Embedder):
    from tests.fixtures_catalog import free_port

    dead = settings.model_copy(update={"chroma_url": f"http://127.0.0.1:{free_port()}"})
    with pytest.raises(ConfigError, match="cannot reach the Chroma server"):
        CatalogIndex(dead, "anything", embedder).count()


def test_another_writers_changes_show_after_the_freshness_window(
    settings: Settings, embedder: Embedder
):
    """Item fields are mirrored in-process; a write from elsewhere shows once the stamp is
    compared again (at most ``freshness_s`` later)."""
    items = load_dataset("ml-100k")[:40]
    writer = CatalogIndex(settings, "freshness", embedder)
    writer.upsert(items, progress=False)
    reader = CatalogIndex(settings, "freshness", embedder)
    target = items[0]
    vector = writer.vectors([target.id])[target.id]
    assert reader.search_vector(vector, k=1)[0].item == target

    renamed = target.model_copy(update={"title": "A Renamed Film (1995)"})
    writer.upsert([*items[1:], renamed], progress=False)
    vector = writer.vectors([target.id])[target.id]  # the new title moved it
    reader.freshness_s = 3600.0
    assert reader.search_vector(vector, k=1)[0].item.title == target.title  # the mirror answers
    reader.freshness_s = 0.0
    assert reader.search_vector(vector, k=1)[0].item == renamed
    assert reader.get([target.id]) == [renamed]
    assert reader.resolve("A Renamed Film") == renamed  # the title maps were rebuilt too

    writer.delete([target.id])
    assert target.id not in ids(reader.search_vector(vector, k=40))
    writer.drop()
