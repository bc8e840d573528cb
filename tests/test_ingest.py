"""Ingestion: idempotent, updates what changed, survives a kill, writes nothing on bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genrec.data.catalog_files import load_dataset
from genrec.embeddings import Embedder
from genrec.errors import CatalogError
from genrec.index import CatalogIndex
from genrec.ingest import ensure_default_catalog, ingest, open_catalog
from genrec.settings import Settings


def write_catalog(path: Path, items) -> Path:
    path.write_text("".join(json.dumps(item.model_dump()) + "\n" for item in items))
    return path


@pytest.fixture(scope="module")
def ml100k_items():
    return load_dataset("ml-100k")


def test_reingest_writes_nothing_and_updates_what_changed(
    tmp_path: Path, settings: Settings, embedder: Embedder, ml100k_items
):
    items = ml100k_items[:60]
    path = write_catalog(tmp_path / "c.jsonl", items)
    index = CatalogIndex(settings, "idempotent", embedder)
    first = ingest(settings, path, index=index, progress=False)
    assert (first.added, first.updated, first.unchanged, first.complete) == (60, 0, 0, True)
    second = ingest(settings, path, index=index, progress=False)
    assert (second.added, second.updated, second.unchanged) == (0, 0, 60)
    assert index.count() == 60

    changed = [*items]
    changed[3] = changed[3].model_copy(update={"title": "A Brand New Title", "tags": ["War"]})
    write_catalog(path, changed)
    third = ingest(settings, path, index=index, progress=False)
    assert (third.added, third.updated, third.unchanged) == (0, 1, 59)
    assert index.count() == 60
    assert index.get([items[3].id])[0].title == "A Brand New Title"
    assert index.resolve("a brand new title").id == items[3].id  # the title map was refreshed
    assert index.search("A Brand New Title", k=1)[0].item.id == items[3].id

    write_catalog(path, changed[:50])
    kept = ingest(settings, path, index=index, progress=False)
    assert (kept.unchanged, kept.removed, index.count()) == (50, 0, 60)  # no prune: kept
    pruned = ingest(settings, path, index=index, progress=False, prune=True)
    assert (pruned.removed, index.count()) == (10, 50)
    assert index.complete
    index.drop()


def test_bad_rows_are_reported_and_good_rows_ingested(
    tmp_path: Path, settings: Settings, embedder: Embedder
):
    path = tmp_path / "c.csv"
    path.write_text("id,title,year\n1,One,2001\n2,,2002\n3,Three,2003\n3,Dup,2004\n")
    report = ingest(settings, path, collection="bad-rows", embedder=embedder, progress=False)
    assert report.added == 2 and report.complete
    assert report.errors == ["line 3: missing title", "line 5: duplicate id '3' (first on line 4)"]
    index = CatalogIndex(settings, "bad-rows", embedder)
    assert index.get(["3"])[0].attributes == {"year": 2003}
    index.drop()


def test_strict_writes_nothing(tmp_path: Path, settings: Settings, embedder: Embedder):
    path = tmp_path / "c.csv"
    path.write_text("id,title\n1,One\n2,\n")
    with pytest.raises(CatalogError, match="line 3: missing title"):
        ingest(settings, path, collection="strict-run", strict=True, embedder=embedder)
    assert not CatalogIndex(settings, "strict-run", embedder).exists()


@pytest.mark.parametrize("name", ["missing.jsonl", "empty.jsonl", "latin1.csv"])
def test_bad_sources_write_nothing(tmp_path: Path, settings: Settings, embedder: Embedder, name):
    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "latin1.csv").write_bytes("id,title\n1,Caf\xe9\n".encode("latin-1"))
    with pytest.raises(CatalogError, match=name.replace(".", r"\.")):
        ingest(settings, tmp_path / name, collection="never-written", embedder=embedder)
    assert not CatalogIndex(settings, "never-written", embedder).exists()


def test_default_catalog_is_not_embedded_twice(ml100k_index: CatalogIndex, settings: Settings):
    fresh = Embedder(settings)  # not loaded yet: it stays so if nothing needs embedding
    index = ensure_default_catalog(settings, embedder=fresh, progress=False)
    assert index.count() == 1682 and index.complete
    assert not fresh.loaded


def test_a_killed_ingest_is_finished_by_the_next_run(
    tmp_path: Path, chroma_server: str, settings: Settings, embedder: Embedder, ml100k_items
):
    """A real `genrec ingest` process killed mid-way (SIGKILL, no cleanup), then run again."""
    items = ml100k_items[:600]
    path = write_catalog(tmp_path / "ml100k.jsonl", items)
    remote = settings.model_copy(update={"chroma_url": chroma_server})
    index = CatalogIndex(remote, "killed-ingest", embedder)
    env = {
        **os.environ,
        "GENREC_HOME": str(tmp_path / "home"),
        "GENREC_CHROMA_URL": chroma_server,
        "GENREC_INGEST_BATCH_SIZE": "8",
    }
    genrec = Path(sys.executable).parent / "genrec"
    cmd = [str(genrec), "ingest", str(path), "--collection", "killed-ingest"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        # the store's own count: the index remembers its count until an ingest completes
        while index.store.count() < 40:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the ingest wrote nothing in 180 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    written = index.store.count()
    assert 40 <= written < len(items), "the ingest finished before it could be killed"
    assert not index.complete  # never claims to be complete when it is not

    report = ingest(remote, path, index=index, progress=False)
    assert report.complete and index.complete
    assert report.unchanged == written  # what landed before the kill is not embedded again
    assert report.added + report.unchanged == len(items)
    assert index.count() == len(items)
    assert sorted(index.ids()) == sorted(item.id for item in items)
    assert index.get(["181"])[0] == next(it for it in items if it.id == "181")
    index.drop()


def test_default_catalog_from_a_path_and_a_user_catalog_left_alone(
    tmp_path: Path, settings: Settings, embedder: Embedder, ml100k_items
):
    path = write_catalog(tmp_path / "default.jsonl", ml100k_items[:20])
    own = settings.model_copy(update={"collection": "default-from-path", "dataset": str(path)})
    index = ensure_default_catalog(own, embedder=embedder, progress=False)
    assert index.count() == 20 and index.complete
    fresh = Embedder(settings)
    assert ensure_default_catalog(own, embedder=fresh, progress=False).count() == 20
    assert not fresh.loaded

    books = tmp_path / "books.csv"
    books.write_text("id,title\nb1,Dune\nb2,Emma\n")
    users = settings.model_copy(update={"collection": "user-books"})
    ingest(users, books, index=CatalogIndex(users, "user-books", embedder), progress=False)
    index = ensure_default_catalog(users, embedder=fresh, progress=False)
    assert index.count() == 2  # the default dataset was not mixed into the user's catalog
    assert not fresh.loaded
    for name in ("default-from-path", "user-books"):
        CatalogIndex(settings, name, embedder).drop()


def test_open_catalog_fills_only_the_default_collection(
    ml100k_index: CatalogIndex, settings: Settings
):
    fresh = Embedder(settings)
    assert open_catalog(settings, embedder=fresh, progress=False).count() == 1682
    assert not fresh.loaded  # ready already: nothing embedded
    custom = settings.model_copy(update={"collection": "never-ingested"})
    with pytest.raises(CatalogError) as err:
        open_catalog(custom, embedder=fresh, progress=False)
    assert err.value.param == "collection"
    assert "genrec ingest FILE --collection never-ingested" in err.value.message
    assert not CatalogIndex(settings, "never-ingested", fresh).exists()  # no ML-100K copy
    assert not fresh.loaded
