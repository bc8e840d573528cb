"""Learned retrieval (`genrec train`, genrec.retrieval) on real data, a real Chroma and real
trained models: quality on a held-out split, the retrieval contract (history, exclusions,
filters), reloading, cold start, a killed training, and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from genrec.data.catalog_files import load_dataset
from genrec.data.interactions import Interaction, read_log
from genrec.errors import CatalogError, InvalidRequest
from genrec.index import CatalogIndex
from genrec.retrieval import RetrievalQuery
from genrec.retrieval.registry import load_retrievers
from genrec.settings import Settings
from genrec.training import artifacts
from genrec.training.collaborative import ItemKNN, ItemKNNParams
from genrec.training.data import build, sequences_from_log
from genrec.training.sequential import SASRecParams
from genrec.training.train import train_retrievers

GENREC = str(Path(sys.executable).parent / "genrec")
TINY_SASREC = SASRecParams(hidden=16, layers=1, heads=1, max_len=50, max_epochs=2, eval_every=1)


def clone_collection(source: CatalogIndex, name: str) -> CatalogIndex:
    """A copy of an ingested collection under another name (vectors copied, not re-embedded),
    so retrievers trained here never change what other tests' default collection serves."""
    target = CatalogIndex(source.settings, name, source.embedder)
    if target.count() == source.count():
        return target
    col = source.store.require()
    got = col.get(include=["embeddings", "metadatas", "documents"])
    out = target.store.collection(create=True)
    with target.store.writing():
        out.upsert(
            ids=got["ids"],
            embeddings=got["embeddings"],
            metadatas=got["metadatas"],
            documents=got["documents"],
        )
    target.set_metadata(**{k: v for k, v in source.metadata.items() if k.startswith("genrec_")})
    target.mirror.forget()
    return target


@pytest.fixture(scope="module")
def index(ml100k_index: CatalogIndex) -> CatalogIndex:
    return clone_collection(ml100k_index, "ml-100k-learned")


@pytest.fixture(scope="module")
def log() -> list[Interaction]:
    return read_log(None, "ml-100k").interactions


@pytest.fixture(scope="module")
def trained(settings: Settings, index: CatalogIndex, log: list[Interaction]) -> dict:
    data = build(sequences_from_log(log), index.ids(), source="ml-100k")
    return train_retrievers(
        settings,
        data,
        index,
        models=["itemknn", "sasrec"],
        sasrec_params=TINY_SASREC,
        progress=None,
    )


@pytest.fixture(scope="module")
def retrievers(settings: Settings, index: CatalogIndex, trained: dict):
    return load_retrievers(settings, index)


def query(index: CatalogIndex, history: list[str], **kw) -> RetrievalQuery:
    return RetrievalQuery(text=kw.pop("text", ""), history=tuple(index.get(history)), **kw)


def test_trained_retrievers_beat_popularity_on_held_out_items(trained: dict):
    popularity = trained["popularity"]["validation"]["ndcg@10"]
    itemknn = trained["models"]["itemknn"]["validation"]["ndcg@10"]
    assert itemknn > 2 * popularity  # measured: 0.106 vs 0.038 on ML-100K
    assert trained["models"]["hybrid"]["validation"]["ndcg@10"] >= itemknn - 1e-9
    assert trained["models"]["sasrec"]["validation"]["ndcg@10"] > 0
    assert trained["content"]["validation"]["ndcg@10"] < itemknn
    assert trained["default"] in ("itemknn", "hybrid", "sasrec")
    weights = trained["models"]["hybrid"]["weights"]
    assert weights["content"] > 0 and sum(weights.values()) == pytest.approx(1.0, abs=0.06)


def test_every_retriever_keeps_the_contract(retrievers, index: CatalogIndex):
    assert set(retrievers.by_name) == {"content", "itemknn", "sasrec", "hybrid"}
    history = ["50", "172", "181", "1", "121"]
    excluded = {"174", "210", "98", "56", "64"}
    for name, r in retrievers.by_name.items():
        got = r.retrieve(query(index, history, k=20, exclude=frozenset(excluded)))
        ids = [c.item.id for c in got]
        assert len(ids) == 20 == len(set(ids)), name
        assert not set(ids) & (set(history) | excluded), name
        assert [c.score for c in got] == sorted((c.score for c in got), reverse=True), name
        old = r.retrieve(query(index, history, k=10, where={"year": {"$lt": 1970}}))
        assert old and all(c.item.attributes["year"] < 1970 for c in old), name


def test_reloaded_bundle_gives_identical_candidates(settings, index, retrievers, log):
    again = load_retrievers(settings, index)
    q = query(index, ["50", "172", "181"], k=20)
    for name in retrievers.by_name:
        a = [(c.item.id, c.score) for c in retrievers.get(name).retrieve(q)]
        b = [(c.item.id, c.score) for c in again.get(name).retrieve(q)]
        assert a == b, name
    # And the bundle's itemknn is exactly the model a fresh fit on the same log gives.
    data = build(sequences_from_log(log), index.ids())
    fresh = ItemKNN.fit(data.sequences, data.n_items, ItemKNNParams())
    pos = data.index_of
    scores = fresh.scores([[pos[i] for i in ("50", "172", "181")]])[0]
    scores[[pos["50"], pos["172"], pos["181"]]] = -np.inf
    top = [data.item_ids[i] for i in np.argsort(-scores, kind="stable")[:10]]
    assert [c.item.id for c in retrievers.get("itemknn").retrieve(q)][:10] == top


def test_sasrec_serves_its_exact_top_from_its_own_weights(settings, index, retrievers, trained):
    # No Chroma collection of its vectors: the search runs over the model's item table.
    assert "vectors" not in trained["models"]["sasrec"]
    names = {c.name for c in index.store.client.list_collections()}
    assert not [n for n in names if ".sasrec." in n]
    sasrec = retrievers.get("sasrec").learned
    assert sasrec.search.exact  # 1,682 items: searched exactly
    hist = [sasrec.position[i] for i in ("50", "172", "181")]
    scores = sasrec.model.scores([hist])[0]
    scores[hist] = -np.inf
    exact = [sasrec.item_ids[i] for i in np.argsort(-scores, kind="stable")[:10]]
    served = retrievers.get("sasrec").retrieve(query(index, ["50", "172", "181"], k=10))
    assert [c.item.id for c in served] == exact
    assert np.allclose([c.score for c in served], np.sort(scores)[::-1][:10], atol=1e-4)


def test_cold_start_is_served(retrievers, index):
    hybrid = retrievers.get("hybrid")
    # A text alone steers (no history: the learned models have nothing to go on).
    got = hybrid.retrieve(query(index, [], text="animated children's movie about toys", k=10))
    assert "1" in [c.item.id for c in got]  # Toy Story
    # A learned retriever with nothing it knows to go on is filled by content, never empty.
    assert len(retrievers.get("itemknn").retrieve(query(index, [], text="space", k=5))) == 5


def test_unknown_retriever_is_a_400_naming_it(retrievers):
    with pytest.raises(InvalidRequest) as info:
        retrievers.get("bert4rec")
    assert info.value.param == "retriever" and "content" in info.value.message


def test_bad_logs_are_clear_errors(tmp_path: Path, index: CatalogIndex):
    empty = tmp_path / "empty.csv"
    empty.write_text("user_id,item_id,timestamp\n")
    with pytest.raises(CatalogError, match="no usable interactions"):
        read_log(empty)
    untimed = tmp_path / "untimed.csv"
    untimed.write_text("user_id,item_id\n1,50\n")
    with pytest.raises(CatalogError, match="timestamp"):
        read_log(untimed)
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(
        '{"user_id": "u1", "item_id": "50", "timestamp": 1}\n'
        "not json\n"
        '{"user_id": "u1", "item_id": "172", "timestamp": "2024-01-02T03:04:05Z"}\n'
        '{"user_id": "u1", "item_id": "no-such-item", "timestamp": 3}\n'
        '{"user_id": "u2", "item_id": "181", "timestamp": "yesterday"}\n'
    )
    read = read_log(mixed)
    assert len(read.interactions) == 3
    assert len(read.errors) == 2
    assert any(":2:" in e for e in read.errors) and any(":5:" in e for e in read.errors)
    data = build(sequences_from_log(read.interactions), index.ids())
    assert data.stats["unknown_item_interactions"] == 1 and data.stats["unknown_items"] == 1
    one_each = [Interaction("u1", "50", 1.0), Interaction("u2", "172", 2.0)]
    with pytest.raises(CatalogError, match="two or more"):
        build(sequences_from_log(one_each), index.ids())


def test_a_killed_training_leaves_the_previous_bundle_serving(tmp_path: Path, settings: Settings):
    home = tmp_path / "home"
    env = {
        **os.environ,
        "GENREC_HOME": str(home),
        "GENREC_MODEL_CACHE": str(settings.models_dir),
    }
    env.pop("GENREC_CHROMA_URL", None)
    catalog = tmp_path / "movies.jsonl"
    items = [it for it in load_dataset("ml-100k") if int(it.id) <= 300]
    catalog.write_text("".join(json.dumps(it.model_dump()) + "\n" for it in items))
    log = tmp_path / "log.csv"
    rows = [x for x in read_log(None, "ml-100k").interactions if int(x.item) <= 300]
    log.write_text(
        "user_id,item_id,timestamp\n" + "".join(f"{x.user},{x.item},{x.timestamp}\n" for x in rows)
    )

    def genrec(*args: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(
            [GENREC, *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **kw,
        )

    ingest = genrec("ingest", str(catalog), "--collection", "small")
    assert ingest.wait(timeout=300) == 0, ingest.stderr.read()
    first = genrec("train", str(log), "--collection", "small", "--models", "itemknn", "--json")
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    version = json.loads(out)["version"]
    # A second training killed while SASRec trains (long before its bundle is written).
    second = genrec("train", str(log), "--collection", "small", "--models", "itemknn,sasrec")
    deadline = time.monotonic() + 300
    seen = ""
    while "sasrec: epoch" not in seen and time.monotonic() < deadline:
        seen += second.stderr.readline()
    assert "sasrec: epoch" in seen, seen
    second.send_signal(signal.SIGKILL)
    second.wait(timeout=60)
    s = Settings(home=home, model_cache=settings.models_dir)
    bundle = artifacts.current(s, "small")
    assert bundle is not None and bundle.version == version
    assert set(bundle.manifest["models"]) == {"itemknn", "hybrid"}
    retrievers = load_retrievers(s, CatalogIndex(s, "small"))
    assert retrievers.default in ("itemknn", "hybrid")
    got = retrievers.get(None).retrieve(query(CatalogIndex(s, "small"), ["50", "172"], k=5))
    assert len(got) == 5


def test_a_catalog_changed_after_training_is_reported(settings, index, trained):
    from genrec.data.item import Item

    newcomer = Item(id="new-1", title="A Film Nobody Has Seen", tags=["Drama"])
    index.upsert([newcomer], progress=False)
    try:
        again = load_retrievers(settings, index)
        assert any("changed after" in note for note in again.notes)
        assert "notes" in again.describe()
        # The newcomer has no interactions: only content can reach it, and hybrid still does.
        got = again.get("hybrid").retrieve(query(index, [], text="A Film Nobody Has Seen", k=5))
        assert got[0].item.id == "new-1"
    finally:
        index.delete(["new-1"])


def test_the_eval_trains_on_the_split_training_part_only(settings, ml_latest_small, tmp_path):
    from genrec.evaluation.datasets import load_eval_dataset
    from genrec.evaluation.prepare import RunOptions, prepare
    from genrec.evaluation.retrievers import training_sequences
    from genrec.evaluation.suite import load_suite

    suite = load_suite(Path(__file__).parents[1] / "eval" / "smoke.yaml")
    prepared = prepare(suite, settings, RunOptions(out=tmp_path, data=ml_latest_small))
    sequences = training_sequences(prepared)
    # No test target is ever trained on (ml-latest-small has one rating per user and movie).
    assert all(c.target not in sequences[c.user_id] for c in prepared.dataset.cases)
    # And genrec train's own held-out item, what choices are made on, is the validation target.
    validation = load_eval_dataset("movielens", path=ml_latest_small, split="validation")
    assert {u: s[-1] for u, s in sequences.items()} == {
        c.user_id: c.target for c in validation.cases
    }


def test_a_selective_filter_widens_past_the_first_candidates(retrievers, index):
    """Filters are checked on the top candidates only, widened until k survive: the result is
    exactly the full ranking restricted to the filter."""
    itemknn = retrievers.get("itemknn").learned
    history = ["50", "172", "181"]
    where = {"year": {"$lt": 1940}}
    got = itemknn.retrieve(query(index, history, k=5, where=where))
    years = {it.id: it.attributes.get("year") for it in index.get(itemknn.item_ids)}
    pos = [itemknn.position[i] for i in history]
    scores = itemknn.model.scores([pos])[0].astype(np.float64) + itemknn._tiebreak
    allowed = [
        i
        for i in np.argsort(-scores, kind="stable")
        if isinstance(years[itemknn.item_ids[i]], int)
        and years[itemknn.item_ids[i]] < 1940
        and itemknn.item_ids[i] not in history
    ]
    assert len(allowed) > 5  # rare enough that the first 256 candidates hold few of them
    assert [c.item.id for c in got] == [itemknn.item_ids[i] for i in allowed[:5]]


def test_itemknn_ranks_its_sparse_row_as_the_dense_one(retrievers, index):
    """itemknn ranks only the items its history reaches (plus the most popular, for ties at
    zero): the same list as ranking every item's dense score."""
    itemknn = retrievers.get("itemknn").learned
    rng = np.random.default_rng(1)
    for size in (1, 3, 40):
        history = [str(i) for i in rng.choice(np.arange(1, 1683), size=size, replace=False)]
        for k in (5, 300):
            got = itemknn.ranked(query(index, history, k=k, exclude=frozenset({"1"})))
            pos = [itemknn.position[i] for i in history]
            scores = itemknn.model.scores([pos])[0].astype(np.float64) + itemknn._tiebreak
            for banned in [*history, "1"]:
                scores[itemknn.position[banned]] = -np.inf
            order = np.lexsort((np.arange(len(scores)), -scores))[:k]
            assert [i for i, _ in got] == [itemknn.item_ids[i] for i in order]
            assert np.allclose([s for _, s in got], scores[order])


def test_a_filtered_ranking_is_the_full_ranking_restricted(retrievers, index, monkeypatch):
    """With a filter, itemknn takes its top among the filter's items (a mask kept per filter),
    from a dense row and from a sparse one alike: the full ranking restricted to the filter."""
    itemknn = retrievers.get("itemknn").learned
    where = {"year": {"$lt": 1960}}
    allowed = index.allowed(where, param="filters")
    rng = np.random.default_rng(2)
    for sparse in (False, True):
        if sparse:  # the row a catalog too big for dense rows scores from
            monkeypatch.setattr(itemknn.model, "history_rows", lambda history: None)
        for size in (1, 3, 40):
            history = [str(i) for i in rng.choice(np.arange(1, 1683), size=size, replace=False)]
            got = itemknn.ranked(query(index, history, k=30, where=where))
            pos = [itemknn.position[i] for i in history]
            scores = itemknn.model.scores([pos])[0].astype(np.float64) + itemknn._tiebreak
            for i, item_id in enumerate(itemknn.item_ids):
                if item_id not in allowed or item_id in history:
                    scores[i] = -np.inf
            order = np.lexsort((np.arange(len(scores)), -scores))[:30]
            assert [i for i, _ in got] == [itemknn.item_ids[i] for i in order]
            assert np.allclose([s for _, s in got], scores[order])
    assert any(kept is allowed for kept, _ in itemknn._per_filter.values())  # kept per filter
