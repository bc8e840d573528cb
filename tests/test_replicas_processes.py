"""Many replicas on shared engines, with real processes: two `genrec serve` on one `chroma run`,
one vLLM server, one PostgreSQL database and one GENREC_HOME. An event posted to one replica
shapes the other's next answer; a `genrec train` beside them is picked up by both with no
failed request; `kill -9` of one replica under load leaves the other answering with no 5xx and
no acknowledged event lost; the shared vLLM server going away is a retryable error, not a hang
or a latch (last: it stops the session's server). Tiny catalog (300 ML-100K movies), tiny
itemknn training, bounded request loops against 127.0.0.1 only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from genrec.data.catalog_files import load_dataset
from genrec.data.interactions import read_log
from genrec.engines.remote import RemoteEngine
from genrec.errors import EngineError
from genrec.recommender import Recommender
from genrec.schema import RecommendRequest
from genrec.server.errors import http_status
from tests.fixtures_catalog import free_port, stop_process

pytestmark = pytest.mark.slow

GENREC = str(Path(sys.executable).parent / "genrec")
COLLECTION = "small"
MAX_ITEM, MAX_USER = 300, 150
READY_S = 600  # generous: two replicas and a vLLM server share two loaded cores


@dataclass
class Replica:
    url: str
    proc: subprocess.Popen
    log: Path

    def health(self) -> dict:
        return httpx.get(f"{self.url}/health", timeout=10).json()


@dataclass
class Cluster:
    env: dict[str, str]
    folder: Path
    replicas: list[Replica]


def _wait_ready(replica: Replica, deadline: float) -> None:
    while True:
        if replica.proc.poll() is not None:
            raise RuntimeError(f"replica exited: {replica.log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{replica.url}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            tail = replica.log.read_text()[-3000:]
            raise RuntimeError(f"replica not ready in {READY_S} s: {tail}")
        time.sleep(1.0)


@pytest.fixture(scope="module")
def cluster(settings, chroma_server, postgres, shared_vllm, tmp_path_factory) -> Iterator[Cluster]:
    folder = tmp_path_factory.mktemp("replicas")
    catalog = folder / "catalog.jsonl"
    items = [it for it in load_dataset("ml-100k") if int(it.id) <= MAX_ITEM]
    catalog.write_text("".join(json.dumps(it.model_dump()) + "\n" for it in items))
    rows = [
        x
        for x in read_log(None, "ml-100k").interactions
        if int(x.item) <= MAX_ITEM and int(x.user) <= MAX_USER
    ]
    (folder / "log.csv").write_text(
        "user_id,item_id,timestamp\n" + "".join(f"{x.user},{x.item},{x.timestamp}\n" for x in rows)
    )
    env = {
        **os.environ,
        "GENREC_HOME": str(folder / "home"),  # the shared artifact folder
        "GENREC_MODEL_CACHE": str(settings.models_dir),
        "GENREC_CHROMA_URL": chroma_server,
        "GENREC_EVENTS_URL": postgres.new_database(),
        "GENREC_ENGINE_URL": shared_vllm.started().url,
        "GENREC_COLLECTION": COLLECTION,
        "GENREC_TRAIN_DEFAULT": "0",
        "GENREC_RELOAD_INTERVAL_S": "0.5",
    }
    ingest = subprocess.run(
        [GENREC, "ingest", str(catalog), "--collection", COLLECTION],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert ingest.returncode == 0, ingest.stderr
    replicas = []
    try:
        for n in range(2):
            port = free_port()
            log = folder / f"replica{n}.log"
            with open(log, "wb") as out:
                proc = subprocess.Popen(
                    [GENREC, "serve", "--port", str(port)],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            replicas.append(Replica(f"http://127.0.0.1:{port}", proc, log))
        deadline = time.monotonic() + READY_S
        for replica in replicas:
            _wait_ready(replica, deadline)
        yield Cluster(env, folder, replicas)
    finally:
        for replica in replicas:
            if replica.proc.poll() is None:
                stop_process(replica.proc, timeout=30)


def recommend(url: str, **body) -> httpx.Response:
    return httpx.post(f"{url}/v1/recommendations", json={"k": 3, **body}, timeout=120)


def purchase(user: str, item: str, n: int) -> dict:
    return {"user_id": user, "item_id": item, "type": "purchase", "timestamp": 1e9 + n}


def test_an_event_posted_to_one_replica_shapes_the_others_next_answer(cluster: Cluster):
    a, b = cluster.replicas
    for replica in (a, b):  # each says what it serves: no bundle trained yet
        doc = replica.health()
        assert doc["bundle"]["version"] is None and doc["collection"] == COLLECTION
    assert a.health()["replica"]["pid"] != b.health()["replica"]["pid"]
    cold = recommend(b.url, user_id="shaped")
    assert cold.status_code == 200, cold.text
    assert cold.json()["user"]["cold_start"] is True
    seen = ["50", "172", "181"]  # the Star Wars trilogy
    posted = httpx.post(
        f"{a.url}/v1/events",
        json={"events": [purchase("shaped", item, n) for n, item in enumerate(seen)]},
        timeout=60,
    )
    assert posted.status_code == 200 and posted.json()["accepted"] == 3, posted.text
    warm = recommend(b.url, user_id="shaped")
    assert warm.status_code == 200, warm.text
    doc = warm.json()
    assert doc["user"]["history"] == seen and doc["user"]["cold_start"] is False
    assert not set(doc["candidates"]) & set(seen)
    assert doc["candidates"] != cold.json()["candidates"]


def test_a_training_beside_them_is_picked_up_by_both_with_no_failed_request(cluster: Cluster):
    replicas = cluster.replicas
    failures: list[str] = []
    served: list[str] = []
    stop = threading.Event()

    def load(url: str) -> None:  # requests all through the switch
        while not stop.is_set():
            r = recommend(url, history=["50", "172"])
            if r.status_code != 200:
                failures.append(f"{url}: {r.status_code} {r.text[:300]}")
            else:
                doc = r.json()
                served.append((doc["bundle"], doc["retriever"]))

    threads = [threading.Thread(target=load, args=(r.url,)) for r in replicas]
    for t in threads:
        t.start()
    try:
        train = subprocess.run(
            [GENREC, "train", str(cluster.folder / "log.csv"), "--collection", COLLECTION]
            + ["--models", "itemknn", "--json"],
            env=cluster.env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert train.returncode == 0, train.stderr
        manifest = json.loads(train.stdout)
        deadline = time.monotonic() + 120
        while {r.health()["bundle"]["version"] for r in replicas} != {manifest["version"]}:
            assert time.monotonic() < deadline, [r.health()["bundle"] for r in replicas]
            time.sleep(0.25)
        fresh = (manifest["version"], manifest["default"])
        while served.count(fresh) < 2:  # requests answered by the new bundle
            assert time.monotonic() < deadline + 120, (failures, served[-5:])
            time.sleep(0.25)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=180)
    assert not failures, failures
    # Each answer came wholly from one bundle: none before the training, then the new one.
    assert set(served) == {(None, "content"), fresh}, set(served)
    for replica in replicas:
        doc = replica.health()
        assert doc["retriever"]["default"] == manifest["default"]
        assert doc["bundle"]["reloads"] == 1 and doc["bundle"]["error"] is None
        r = recommend(replica.url, history=["50", "172"])
        assert r.status_code == 200, r.text
        assert (r.json()["bundle"], r.json()["retriever"]) == fresh


def test_kill_9_of_one_replica_under_load_loses_nothing_acknowledged(cluster: Cluster):
    a, b = cluster.replicas
    user, items = "loaded", [str(i) for i in range(1, 121)]
    acknowledged: list[str] = []
    errors_b: list[str] = []
    refused_a = 0
    stop = threading.Event()

    def read_b() -> None:  # recommendations on the survivor, all through the kill
        while not stop.is_set():
            r = recommend(b.url, user_id=user)
            if r.status_code >= 500:
                errors_b.append(f"{r.status_code} {r.text[:300]}")

    reader = threading.Thread(target=read_b)
    reader.start()
    try:
        for n, item in enumerate(items):
            if n == 40:
                os.kill(a.proc.pid, signal.SIGKILL)  # mid-stream, requests in flight on A
            body = {"events": [{**purchase(user, item, n), "event_id": f"e{n}"}]}
            for replica in (a, b) if n % 2 else (b, a):  # as a balancer: the other on failure
                try:
                    r = httpx.post(f"{replica.url}/v1/events", json=body, timeout=60)
                except httpx.TransportError:
                    refused_a += replica is a
                    continue
                if replica is b and r.status_code >= 500:
                    errors_b.append(f"{r.status_code} {r.text[:300]}")
                if r.status_code == 200 and r.json()["accepted"] + r.json()["duplicates"] == 1:
                    acknowledged.append(item)
                    break
    finally:
        stop.set()
        reader.join(timeout=180)
    assert a.proc.wait(timeout=30) == -signal.SIGKILL
    assert refused_a > 0 and not errors_b, errors_b
    assert len(acknowledged) == len(items)  # every event found a replica that committed it
    state = httpx.get(f"{b.url}/v1/users/{user}", timeout=30).json()
    assert set(acknowledged) <= set(state["consumed"])
    assert b.health()["status"] == "ok"


# ---- last in the session's use of the shared vLLM server: this stops it


async def test_a_dead_engine_server_is_a_retryable_error_that_does_not_latch(
    settings, ml100k_index, recommender, shared_vllm
):
    vllm_server = shared_vllm.started()
    remote_settings = settings.model_copy(update={"engine_url": vllm_server.url})
    async with Recommender(
        remote_settings, index=ml100k_index, tokenizer=recommender.tokenizer
    ) as remote:
        assert isinstance(remote.engine, RemoteEngine)
        await remote.recommend(RecommendRequest(history=["50"], k=3))  # it answers while up
        assert vllm_server.proc is not None
        vllm_server.proc.terminate()
        vllm_server.proc.wait(timeout=60)
        for _ in range(2):  # and again: a failed call does not latch the remote engine
            with pytest.raises(EngineError) as info:
                await remote.recommend(RecommendRequest(history=["50"], k=3))
            assert info.value.retryable and http_status(info.value) == 503
            assert "cannot reach the engine" in info.value.message
        # The server is another process that may come back: genrec keeps trying it per
        # request (a retryable 503 while it is down) instead of refusing forever.
        assert remote.ready
