"""Ingest at scale: the catalog streamed in two passes, the hash manifest, the int8 embedder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from genrec.data.catalog_files import CatalogFile, load_dataset
from genrec.data.item import Item
from genrec.embeddings import INT8_MODEL, STATIC_MODEL, Embedder
from genrec.errors import CatalogError
from genrec.index import CatalogIndex, writer
from genrec.index.store import item_hash
from genrec.ingest import ingest
from genrec.settings import Settings


@pytest.fixture(scope="module")
def items() -> list[Item]:
    return load_dataset("ml-100k")[:80]


def write_catalog(path: Path, items: list[Item]) -> Path:
    path.write_text("".join(json.dumps(item.model_dump()) + "\n" for item in items))
    return path


def test_item_hash_is_the_hash_of_the_dumped_item(items: list[Item]):
    """Collections written before keep their hashes: nothing is re-embedded after an upgrade."""
    odd = Item(id="x", title="T", tags=["a"], attributes={"b": 1, "a": "z", "c": 1.5, "d": True})
    for item in [*items[:5], odd, Item(id="y", title="U", popularity=3)]:
        payload = json.dumps(["m", item.model_dump(mode="json")], sort_keys=True)
        assert item_hash(item, "m") == hashlib.sha1(payload.encode()).hexdigest()


def test_a_catalog_file_streams_and_reports_duplicates_by_line(tmp_path: Path, items):
    rows = [json.dumps(it.model_dump()) for it in items[:30]]
    rows.insert(25, json.dumps(items[2].model_dump()))  # line 26 repeats line 3's id
    rows.insert(10, "{not json")
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(rows) + "\n")
    stream = CatalogFile(path)
    first = [it.id for it in stream]
    assert first == [it.id for it in items[:30]]
    assert [str(e) for e in stream.errors] == [
        "line 11: not valid JSON (Expecting property name enclosed in double quotes)",
        f"line 27: duplicate id {items[2].id!r} (first on line 3)",
    ]
    assert [it.id for it in stream] == first  # a second pass reads the file again
    strict = CatalogFile(path, strict=True)
    with pytest.raises(CatalogError, match="2 bad row"):
        list(strict)  # raised when the pass ends, before a writer's first write


def test_reingest_uses_the_manifest_and_stays_exact(
    tmp_path: Path, settings: Settings, embedder: Embedder, items
):
    path = write_catalog(tmp_path / "c.jsonl", items)
    index = CatalogIndex(settings, "manifest-run", embedder)
    assert ingest(settings, path, index=index, progress=False).added == 80
    manifest = index.store.manifest
    meta = index.metadata
    held = manifest.load(index.store.collection_id(), meta)
    assert held is not None and len(held) == 80
    assert held[items[7].id] == item_hash(items[7], embedder.model_id)

    changed = [*items]
    changed[7] = changed[7].model_copy(update={"title": "Seventh, Renamed"})
    extra = Item(id="new-1", title="A Film Nobody Saw")
    write_catalog(path, [*changed, extra])
    report = ingest(settings, path, index=index, progress=False)
    assert (report.added, report.updated, report.unchanged) == (1, 1, 79)
    assert index.get([items[7].id])[0].title == "Seventh, Renamed"
    stamp = index.metadata["genrec_written"]
    assert stamp != meta["genrec_written"]  # a write moves the stamp, so old manifests expire
    assert manifest.load(index.store.collection_id(), index.metadata)[extra.id]

    index.delete([extra.id, items[0].id])  # the manifest follows a delete
    held = manifest.load(index.store.collection_id(), index.metadata)
    assert held is not None and extra.id not in held and len(held) == 79
    report = ingest(settings, path, index=index, progress=False)
    assert (report.added, report.updated, report.unchanged) == (2, 0, 79)

    # A manifest that does not fit the collection (here: another collection's) is not trusted:
    # the hashes are read from Chroma, and the counts stay exact.
    saved = manifest.path.read_bytes()
    index.drop()
    assert not manifest.path.exists()
    write_catalog(path, items[:40])
    assert ingest(settings, path, index=index, progress=False).added == 40
    manifest.path.write_bytes(saved)
    write_catalog(path, [*changed, extra])
    report = ingest(settings, path, index=index, progress=False, prune=True)
    assert (report.added, report.updated, report.unchanged) == (41, 1, 39)
    assert index.count() == 81 and index.complete
    index.drop()


def test_many_changes_are_read_again_in_a_second_pass(
    tmp_path: Path,
    settings: Settings,
    embedder: Embedder,
    items,
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(writer, "KEEP_CHANGED", 10)  # the first pass keeps 10 changed items
    path = write_catalog(tmp_path / "c.jsonl", items[:30])
    index = CatalogIndex(settings, "two-passes", embedder)
    assert ingest(settings, path, index=index, progress=False).added == 30
    renamed = [it.model_copy(update={"title": f"{it.title} (remastered)"}) for it in items[:30]]
    write_catalog(path, renamed + items[30:50])
    report = ingest(settings, path, index=index, progress=False)
    assert (report.added, report.updated, report.unchanged) == (20, 30, 0)
    assert index.get([items[5].id])[0].title == renamed[5].title
    assert index.count() == 50 and index.complete
    index.drop()


def test_the_int8_model_is_its_own_model(tmp_path: Path, settings: Settings, embedder: Embedder):
    """int8 vectors are close to the float model's, but a collection never mixes the two; its
    graph is made once, beside the float graph, in the model cache given."""
    cache = tmp_path / "models"
    (cache / "embeddings").mkdir(parents=True)
    float_graph = embedder.encoder.graph  # the float graph the session already exported
    (cache / "embeddings" / float_graph.name).symlink_to(float_graph)
    own = settings.model_copy(update={"model_cache": cache, "embedding_model": INT8_MODEL})
    int8 = Embedder(own)
    texts = ["Toy Story (1995). Animation. Genres: Children, Comedy.", "a quiet war drama"]
    vectors = int8.encode(texts)
    assert int8.model_id == INT8_MODEL and int8.backend == "onnx"
    assert int8.encoder.graph.name.endswith("-int8.onnx") and int8.encoder.graph.parent == (
        cache / "embeddings"
    )
    cosine = (vectors * embedder.encode(texts)).sum(axis=1)
    assert np.all(cosine > 0.9) and np.all(cosine < 0.9999)  # close, and not the same model
    index = CatalogIndex(own, "int8-catalog", int8)
    index.upsert([Item(id="1", title="Toy Story"), Item(id="2", title="Saving Private Ryan")])
    # searched with the model that filled it when none is named
    reopened = CatalogIndex(settings.model_copy(update={"model_cache": cache}), "int8-catalog")
    assert reopened.embedder.model_id == INT8_MODEL
    assert reopened.search("animated toys", k=1)[0].item.id == "1"
    index.drop()


def test_the_static_model_is_distilled_once_and_reads_words(
    settings: Settings, embedder: Embedder, items, monkeypatch: pytest.MonkeyPatch
):
    """The static model: a token table distilled from the packaged MiniLM once (cached, not
    redone), unit vectors that put a text near texts sharing its words, its own model ID in a
    collection, and a big write embedded in process (no child could beat a table lookup)."""
    from genrec.embeddings_static import static_table
    from genrec.index import embed_ahead

    own = settings.model_copy(update={"embedding_model": STATIC_MODEL})
    static = Embedder(own)
    texts = [
        "Toy Story (1995). Animation. Genres: Children, Comedy.",
        "Toy Story 2 (1999). Animation. Genres: Children, Comedy.",
        "Saving Private Ryan (1998). Genres: Drama, War.",
    ]
    vectors = static.encode(texts)
    assert static.backend == "static" and vectors.shape == (3, embedder.dimension)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    table = static_table(static.path, own.models_dir)
    stamp = table.stat().st_mtime_ns
    again = Embedder(own).encode(texts)  # a second process-worth: the cached table, same vectors
    assert table.stat().st_mtime_ns == stamp and np.array_equal(again, vectors)
    # not the float model's vectors: a collection records which one filled it
    assert np.all((vectors * embedder.encode(texts)).sum(axis=1) < 0.99)
    with embed_ahead.embedding_ahead(static, total=10 * embed_ahead.AHEAD_MIN_ITEMS) as embed:
        assert isinstance(embed, embed_ahead._InProcess)
    monkeypatch.setattr(embed_ahead, "AHEAD_MIN_ITEMS", 10)
    index = CatalogIndex(own, "static-catalog", static)
    assert index.upsert(items[:60], progress=False).added == 60
    reopened = CatalogIndex(settings, "static-catalog")
    assert reopened.embedder.model_id == STATIC_MODEL
    assert reopened.search("Toy Story", k=1)[0].item.title.startswith("Toy Story")
    index.drop()


def test_a_big_write_embeds_in_a_child_process(
    settings: Settings, embedder: Embedder, items, monkeypatch: pytest.MonkeyPatch
):
    """Chroma's upsert holds the GIL, so a big write embeds the next batch in child processes
    (a share each): the same vectors as in process; a child that dies leaves its share to the
    parent."""
    from genrec.index import embed_ahead

    texts = [it.embedding_text() for it in items[:40]]
    want = embedder.encode(texts)
    total = embed_ahead.AHEAD_MIN_ITEMS
    with embed_ahead.embedding_ahead(embedder, total=total, processes=2) as embed:
        assert isinstance(embed, embed_ahead._Pool) and len(embed.children) == 2
        first = embed.submit(texts[:21]).result()  # shares of 11 and 10
        child = embed.children[0]
        assert child.proc is not None
        child.proc.kill()  # a child that dies: the parent embeds its share
        child.proc.wait()
        second = embed.submit(texts[21:]).result()
        assert child.proc is None and embed.children[1].proc is not None
    assert np.allclose(np.vstack([first, second]), want, atol=1e-5)
    # an ingest through it: every item stored, its vectors the model's
    monkeypatch.setattr(embed_ahead, "AHEAD_MIN_ITEMS", 10)
    index = CatalogIndex(settings, "embedded-ahead", embedder)
    assert index.upsert(items[:60], progress=False).added == 60
    stored = index.vectors([items[7].id])[items[7].id]
    assert np.allclose(stored, embedder.encode([items[7].embedding_text()])[0], atol=1e-5)
    index.drop()


def test_the_ingest_parts_bench_prints_where_the_cpu_goes(
    tmp_path: Path, settings: Settings, items
):
    """The per-item bench (genrec.bench.ingest_parts) on a few real items: every figure a
    positive cost, and the bound on two cores follows from them."""
    from genrec.bench.ingest_parts import run

    got = run(settings, write_catalog(tmp_path / "c.jsonl", items[:80]), 80, batch=32)
    assert got["items"] == 80 and got["model"] == "all-MiniLM-L6-v2"
    costs = [got["embed_ms_per_item_1_thread"], got["embed_ms_per_item_2_threads"]]
    costs += got["write_ms_per_item_with_documents"] + got["write_ms_per_item_without_documents"]
    assert all(c > 0 for c in costs)
    per_item = got["embed_ms_per_item_1_thread"] + min(got["write_ms_per_item_without_documents"])
    assert abs(got["bound_items_per_s_2_cores"] - 2000 / per_item) < 0.01 * 2000 / per_item


def test_a_dropped_collection_leaves_nothing_to_the_next(settings: Settings, embedder: Embedder):
    """chromadb 1.5's delete_collection alone leaves the records' metadata rows, which a record
    of a later collection inherited (an item without tags came back with Toy Story's)."""
    old = CatalogIndex(settings, "dropped-first", embedder)
    toy = Item(id="a", title="Toy Story", tags=["Animation"], popularity=9.0)
    old.upsert([toy], progress=False)
    old.drop()
    new = CatalogIndex(settings, "made-after", embedder)
    item = Item(id="b", title="T")
    new.upsert([item], progress=False)
    assert new.get(["b"]) == [item]
    new.drop()


def test_an_updated_item_loses_the_fields_it_dropped(settings: Settings, embedder: Embedder):
    """Chroma's upsert merges metadata: an item whose tags, attribute and popularity went away
    must not keep them, in its record or in a filter."""
    index = CatalogIndex(settings, "fields-dropped", embedder)
    full = Item(id="a", title="Toy Story", tags=["Animation"], attributes={"year": 1995})
    index.upsert(
        [full.model_copy(update={"popularity": 9.0}), Item(id="b", title="Heat")], progress=False
    )
    bare = Item(id="a", title="Toy Story")
    report = index.upsert([bare, Item(id="b", title="Heat")], progress=False)
    assert (report.updated, report.unchanged) == (1, 1)
    assert index.get(["a"]) == [bare]
    assert index.store.ids_where({"year": 1995}) == set()
    index.drop()


def test_the_embedders_bench_measures_cost_and_quality(settings: Settings, ml_latest_small):
    """genrec.bench.embedders on the real ml-latest-small (the static model: seconds): every
    tag used on >= 3 movies is a query, every user with more than 10 liked movies a history,
    and the figures are measured fractions, not placeholders."""
    from genrec.bench.embedders import measure

    got = measure(STATIC_MODEL, settings, ml_latest_small)
    assert got["backend"] == "static" and got["items_per_cpu_s"] > 1000
    assert got["tag_queries"] == 324 and got["history_users"] == 570
    assert 0 < got["tag_queries_ndcg@20"] < got["tag_queries_recall@20"] < 0.5
    assert 0 < got["history_recall@20"] < 0.5
