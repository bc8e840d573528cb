"""Hot reload of trained retrievers in one process (real Chroma, real trainings of a tiny
itemknn): a new bundle swaps in whole, a request keeps the bundle it started with, faults keep
the serving bundle and are retried, and pruning waits for its grace period. The many-process
version (two `genrec serve` replicas, `chroma run`, PostgreSQL, vLLM) is in
tests/test_replicas_processes.py."""

from __future__ import annotations

import asyncio
import json
import shutil
import time

import pytest

from genrec.data.catalog_files import load_dataset
from genrec.data.interactions import read_log
from genrec.errors import InvalidRequest
from genrec.index import CatalogIndex
from genrec.index.store import ChromaStore
from genrec.ingest import ingest
from genrec.recommender import Recommender
from genrec.retrieval import RetrievalQuery
from genrec.retrieval.reload import Reloader
from genrec.schema import RecommendRequest
from genrec.settings import Settings
from genrec.training import artifacts
from genrec.training.data import build, sequences_from_log
from genrec.training.train import prune, train_retrievers

COLLECTION = "replicas-small"
# the first 300 ML-100K movies and the first 150 users' interactions with them: small trainings
MAX_ITEM, MAX_USER = 300, 150


@pytest.fixture(scope="module")
def home_settings(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A home of its own (bundles are per home); the session's converted model."""
    return settings.model_copy(
        update={"home": tmp_path_factory.mktemp("replicas-home"), "collection": COLLECTION}
    )


@pytest.fixture(scope="module")
def index(home_settings: Settings, embedder) -> CatalogIndex:
    path = home_settings.home / "small.jsonl"
    items = [it for it in load_dataset("ml-100k") if int(it.id) <= MAX_ITEM]
    path.write_text("".join(json.dumps(it.model_dump()) + "\n" for it in items))
    index = CatalogIndex(home_settings, COLLECTION, embedder)
    ingest(home_settings, path, index=index, progress=False)
    return index


@pytest.fixture(scope="module")
def data(index: CatalogIndex):
    rows = [
        x
        for x in read_log(None, "ml-100k").interactions
        if int(x.item) <= MAX_ITEM and int(x.user) <= MAX_USER
    ]
    return build(sequences_from_log(rows), index.ids(), source="ml-100k<=300")


def train(settings: Settings, index: CatalogIndex, data) -> str:
    return train_retrievers(settings, data, index, models=["itemknn"], progress=None)["version"]


def bare_bundle(settings: Settings, n: int) -> str:
    """A bundle without models, written the way training writes one (pruning needs no more)."""
    version = f"20260101T00000{n}-bare"
    manifest = {"version": version, "models": {}, "default": "content"}
    artifacts.write_bundle(settings, "prune-only", manifest, ["1"], {})
    return version


def query(index: CatalogIndex, history: list[str]) -> RetrievalQuery:
    return RetrievalQuery(text="", history=tuple(index.get(history)), k=5)


def test_a_new_bundle_swaps_in_whole_and_a_request_keeps_its_own(home_settings, index, data):
    rec = Recommender(home_settings, index=index)
    assert rec.retrievers.version is None and rec.retrievers.default == "content"
    before = rec.retrievers  # what a request that started now holds

    first = train(home_settings, index, data)
    assert rec.retrievers is before  # nothing changes until a check
    assert asyncio.run(rec.reload()) is True
    serving = rec.retrievers
    assert serving.version == first and serving.default in ("itemknn", "hybrid")
    assert set(serving.by_name) == {"content", "itemknn", "hybrid"}
    # The request that started before the swap finishes on the old retrievers, unchanged.
    assert before.default == "content" and set(before.by_name) == {"content"}
    assert len(before.get(None).retrieve(query(index, ["50", "172"]))) == 5

    second = train(home_settings, index, data)
    assert second != first
    assert asyncio.run(rec.reload()) is True and rec.retrievers.version == second
    assert asyncio.run(rec.reload()) is False  # no change: nothing reloaded
    status = rec.bundle_status()
    assert status is not None and status["version"] == second and status["reloads"] == 2
    assert status["error"] is None
    # A request is validated against the retrievers it holds, not against newer ones.
    with pytest.raises(InvalidRequest) as err:
        rec.plan(RecommendRequest(history=["50"], retriever="itemknn"), before)
    assert err.value.param == "retriever"
    rec.plan(RecommendRequest(history=["50"], retriever="itemknn"))


def test_given_retrievers_are_never_reloaded(home_settings, index, data):
    fixed = Reloader.load(home_settings, index).retrievers
    rec = Recommender(home_settings, index=index, retrievers=fixed)
    train(home_settings, index, data)
    assert asyncio.run(rec.reload()) is False and rec.retrievers is fixed
    assert rec.bundle_status() is None


def test_faults_keep_the_serving_bundle_and_are_retried(home_settings, index, data):
    version = train(home_settings, index, data)
    reloader = Reloader.load(home_settings, index)
    assert reloader.version == version
    root = artifacts.retrievers_dir(home_settings, COLLECTION)
    pointer = root / "CURRENT"

    # CURRENT naming a folder that has no manifest (copied in by hand, half-written).
    (root / "20990101T000000-half").mkdir()
    (root / "20990101T000000-half" / "items.json").write_text("[")
    pointer.write_text("20990101T000000-half\n")
    assert reloader.check(force=True) is False
    assert reloader.version == version and "no manifest.json" in (reloader.error or "")
    assert reloader.retrievers.get(None).retrieve(query(index, ["50", "172"]))

    # A complete-looking bundle whose model file is truncated.
    broken = root / "20990101T000001-broken"
    broken.mkdir()
    for name in ("manifest.json", "items.json", "popularity.npy"):
        (broken / name).write_bytes((root / version / name).read_bytes())
    (broken / "itemknn.npz").write_bytes((root / version / "itemknn.npz").read_bytes()[:100])
    pointer.write_text(broken.name + "\n")
    assert reloader.check(force=True) is False
    assert reloader.version == version and "cannot be loaded" in (reloader.error or "")
    # Backing off: an unforced check soon after does not retry the broken bundle.
    checked = reloader.checked_at
    assert reloader.check() is False and reloader.checked_at == checked

    # The shared folder unreadable for a moment (CURRENT is not a readable file).
    pointer.unlink()
    pointer.mkdir()
    assert reloader.check(force=True) is False
    assert "cannot read the bundle pointer" in (reloader.error or "")
    pointer.rmdir()

    # Back to a good bundle: served, the error cleared.
    newer = train(home_settings, index, data)
    assert reloader.check(force=True) is True
    assert reloader.version == newer and reloader.error is None
    for junk in ("20990101T000000-half", broken.name):
        shutil.rmtree(root / junk)


def test_the_watcher_picks_up_a_training_within_its_interval(home_settings, index, data):
    reloader = Reloader.load(home_settings, index)

    async def scenario() -> str | None:
        task = asyncio.create_task(reloader.watch(0.05))
        try:
            version = await asyncio.to_thread(train, home_settings, index, data)
            deadline = time.monotonic() + 30
            while reloader.version != version and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            return version
        finally:
            task.cancel()

    version = asyncio.run(scenario())
    assert reloader.version == version and reloader.reloads == 1


def test_pruning_waits_for_its_grace_period(home_settings):
    s = home_settings.model_copy(update={"prune_grace_s": 3600.0})
    root = artifacts.retrievers_dir(s, "prune-only")
    versions = [bare_bundle(s, n) for n in range(3)]
    tmp = root / ".20990101T000000-interrupted.x"
    tmp.mkdir()
    # Beyond the two kept, older bundles stopped serving just now: kept for the grace period.
    assert artifacts.stale_bundles(s, "prune-only") == []
    later = artifacts.stale_bundles(s, "prune-only", now=time.time() + 3601)
    kept = set(versions[-2:])
    assert kept.isdisjoint(p.name for p in later)
    assert tmp in later and versions[0] in {p.name for p in later}
    # The serving bundle is never pruned, even when older than the two newest.
    (root / "CURRENT").write_text(versions[0] + "\n")
    later = artifacts.stale_bundles(s, "prune-only", now=time.time() + 3601)
    assert versions[0] not in {p.name for p in later}
    (root / "CURRENT").write_text(versions[-1] + "\n")
    # With no grace, prune removes them now.
    prune(s.model_copy(update={"prune_grace_s": 0.0}), "prune-only")
    left = {p.name for p in root.iterdir()}
    assert set(versions[-2:]) <= left and versions[0] not in left and tmp.name not in left


def test_pruning_drops_only_the_collections_no_kept_bundle_names(home_settings):
    s = home_settings.model_copy(update={"prune_grace_s": 0.0})
    shared, own = "prune-named.vectors.shared", "prune-named.sasrec.old"
    for name in (shared, own):
        ChromaStore(s, name, model_id="").set_metadata(genrec_complete=True)  # created
    versions = []
    for n, names in enumerate([[own, shared], [], [shared]]):
        version = f"20260101T00000{n}-named"
        models = {f"m{i}": {"kind": "vector", "vectors": v} for i, v in enumerate(names)}
        manifest = {"version": version, "models": models, "default": "content"}
        artifacts.write_bundle(s, "prune-named", manifest, ["1"], {})
        versions.append(version)
    prune(s, "prune-named")
    left = {p.name for p in artifacts.retrievers_dir(s, "prune-named").iterdir()}
    assert versions[0] not in left and set(versions[1:]) <= left
    # the old bundle's own collection went with it; the one the serving bundle reads stayed
    assert not ChromaStore(s, own, model_id="").exists()
    assert ChromaStore(s, shared, model_id="").exists()


def test_bundles_lists_the_serving_one_first_then_newest(home_settings):
    # What an evaluation searches for a bundle trained on its data (a fine-tune trains a test
    # split's and a validation split's on one collection, so the one it needs may not serve).
    s = home_settings.model_copy(update={"prune_grace_s": 3600.0})
    root = artifacts.retrievers_dir(s, "listed")
    versions = []
    for n in range(3):
        version = f"20260102T00000{n}-bare"
        manifest = {"version": version, "models": {}, "default": "content"}
        artifacts.write_bundle(s, "listed", manifest, ["1"], {})
        versions.append(version)
    (root / ".20990101T000000-interrupted.x").mkdir()  # a training still writing: not listed
    (root / "20990101T000000-no-manifest").mkdir()
    assert [b.version for b in artifacts.bundles(s, "listed")] == versions[::-1]
    (root / "CURRENT").write_text(versions[0] + "\n")
    listed = [b.version for b in artifacts.bundles(s, "listed")]
    assert listed == [versions[0], versions[2], versions[1]]
    assert artifacts.bundles(s, "never-trained") == []
