"""The event routes of a real `genrec serve` (subprocesses, raw HTTP), under faults: kill -9 during
a burst of acknowledged batches loses none of them, replayed batches add nothing, a body over the
limit is a 413, the API key guards the routes, and a PostgreSQL server that goes away gives
retryable 503s and is used again when it returns.

The event routes answer once the catalog is open, before the LM engine is ready, so these tests
never wait for an engine; every server is killed (its process group) when done.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from genrec.events.sqlite import SQLiteStore
from tests.fixtures_catalog import free_port

KEY = "events-key-" + "y" * 16
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_BODY = 200_000
BATCH = 50
START_TIMEOUT_S = 600


@dataclass
class Served:
    url: str
    proc: subprocess.Popen
    log: Path

    def kill(self) -> None:
        """kill -9 of the server and everything it started (the engine's processes)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def post(self, path: str, body: object, **kw) -> httpx.Response:
        return httpx.post(self.url + path, json=body, headers=kw.pop("headers", AUTH), **kw)


def serve(home: Path, **env: str) -> Served:
    """`genrec serve` on a free port, once its event routes answer."""
    port = free_port()
    log = home / f"server-{port}.log"
    home.mkdir(parents=True, exist_ok=True)
    environ = {
        **os.environ,
        "GENREC_HOME": str(home),
        "GENREC_MODEL_CACHE": str(Path.home() / ".cache" / "genrec" / "models"),
        "GENREC_API_KEY": KEY,
        "GENREC_MAX_BODY_BYTES": str(MAX_BODY),
        "GENREC_TRAIN_DEFAULT": "false",
        "GENREC_ENGINE_TIMEOUT_S": "600",
        **env,
    }
    environ.pop("GENREC_CONFIG", None)
    genrec = Path(sys.executable).parent / "genrec"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(genrec), "serve", "--port", str(port), "--log-level", "warning"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=environ,
            start_new_session=True,  # its own process group: kill -9 reaches the engine too
        )
    srv = Served(f"http://127.0.0.1:{port}", proc, log)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            pytest.fail(f"genrec serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            status = httpx.get(srv.url + "/v1/users/probe", headers=AUTH, timeout=5).status_code
        except httpx.HTTPError:
            status = 0
        if status == 200:
            return srv
        if time.monotonic() > deadline:
            srv.kill()
            pytest.fail(f"the event routes did not answer in {START_TIMEOUT_S} s")
        time.sleep(0.2)


def batch_of(sender: int, n: int) -> list[dict]:
    return [
        {
            "user_id": f"burst-{sender}",
            "item_id": str(1 + (n * BATCH + j) % 1600),
            "type": "view",
            "event_id": f"{sender}-{n}-{j}",
        }
        for j in range(BATCH)
    ]


@dataclass
class Burst:
    home: Path
    acked: list[list[dict]]  # batches the server answered 200
    cut: list[list[dict]]  # batches in flight when it was killed


@pytest.fixture(scope="module")
def burst(tmp_path_factory: pytest.TempPathFactory) -> Burst:
    """Three clients send batches as fast as they are acknowledged; kill -9 mid-burst."""
    home = tmp_path_factory.mktemp("events-home")
    srv = serve(home)
    acked: list[list[dict]] = []
    cut: list[list[dict]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def send(sender: int) -> None:
        with httpx.Client(timeout=30) as client:
            n = 0
            while not stop.is_set():
                batch = batch_of(sender, n)
                try:
                    r = client.post(srv.url + "/v1/events", json={"events": batch}, headers=AUTH)
                except httpx.HTTPError:
                    with lock:
                        cut.append(batch)
                    return
                with lock:
                    if r.status_code == 200 and r.json()["accepted"] == BATCH:
                        acked.append(batch)
                    else:
                        cut.append(batch)
                        return
                n += 1

    threads = [threading.Thread(target=send, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acked) < 40 and time.monotonic() < deadline and any(t.is_alive() for t in threads):
        time.sleep(0.01)
    srv.kill()  # mid-burst: the clients are still sending
    stop.set()
    for t in threads:
        t.join()
    return Burst(home, acked, cut)


@pytest.fixture(scope="module")
def server(burst: Burst) -> Iterator[Served]:
    """`genrec serve` restarted on the killed one's home (its catalog and event store)."""
    srv = serve(burst.home)
    try:
        yield srv
    finally:
        srv.kill()


def test_kill_9_during_a_burst_loses_no_acknowledged_event(burst: Burst) -> None:
    assert len(burst.acked) >= 10, "the burst was too short to mean anything"
    assert burst.cut, "the server was killed after the burst, not during it"
    with SQLiteStore(burst.home / "events.sqlite3") as store:
        stored = {e.event_id for e in store.scan("ml-100k")}
    acked = {e["event_id"] for b in burst.acked for e in b}
    assert acked <= stored, f"{len(acked - stored)} acknowledged events were lost"
    # a batch cut off by the kill is all there or not at all (one transaction)
    for batch in burst.cut:
        ids = {e["event_id"] for e in batch}
        assert ids <= stored or not ids & stored


def test_replayed_batches_add_nothing_and_cut_ones_complete(server: Served, burst: Burst) -> None:
    replay = [e for b in burst.acked for e in b]
    for start in range(0, len(replay), 1000):
        part = replay[start : start + 1000]
        r = server.post("/v1/events", {"events": part})
        assert r.status_code == 200, r.text
        assert r.json() == {
            "object": "events.recorded",
            "accepted": 0,
            "duplicates": len(part),
            "rejected": 0,
            "errors": [],
        }
    for batch in burst.cut:  # the client's retry after the failure: whole, never doubled
        got = server.post("/v1/events", {"events": batch}).json()
        assert got["accepted"] + got["duplicates"] == BATCH and got["rejected"] == 0
    again = server.post("/v1/events", {"events": burst.cut[0]}).json()
    assert again["accepted"] == 0 and again["duplicates"] == BATCH


def test_each_event_is_checked_on_its_own(server: Served) -> None:
    events = [
        {"user_id": "checked", "item_id": "50", "type": "purchase"},
        {"user_id": "checked", "item_id": "no-such-item", "type": "view"},
        {"user_id": "checked", "item_id": "172", "type": "like"},
        {"user_id": "checked", "item_id": "181", "type": "view", "timestamp": "soon"},
        {"user_id": "checked", "item_id": "1", "type": "rate", "value": 4.5},
    ]
    r = server.post("/v1/events", {"events": events})
    assert r.status_code == 200
    doc = r.json()
    assert (doc["accepted"], doc["duplicates"], doc["rejected"]) == (2, 0, 3)
    assert [(e["index"], e["param"]) for e in doc["errors"]] == [
        (1, "events[1].item_id"),
        (2, "events[2].type"),
        (3, "events[3].timestamp"),
    ]
    user = httpx.get(server.url + "/v1/users/checked", headers=AUTH).json()
    assert user["history"] == ["50", "1"] and user["consumed"] == ["1", "50"]
    # a body that is not a batch is refused whole, naming the field
    for body, param in (({"events": []}, "events"), ({"event": events}, "events"), ([1], None)):
        bad = server.post("/v1/events", body)
        assert bad.status_code == 400 and bad.json()["error"]["param"] == param


def test_a_body_over_the_limit_is_413(server: Served) -> None:
    big = [
        {"user_id": "big", "item_id": "50", "type": "view", "event_id": f"{i:0>200}"}
        for i in range(1000)
    ]
    r = server.post("/v1/events", {"events": big})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    assert not httpx.get(server.url + "/v1/users/big", headers=AUTH).json()["known"]


def test_the_api_key_guards_the_event_and_user_routes(server: Served) -> None:
    event = {"events": [{"user_id": "guarded", "item_id": "50", "type": "view"}]}
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        assert server.post("/v1/events", event, headers=headers).status_code == 401
        assert httpx.get(server.url + "/v1/users/x", headers=headers).status_code == 401
        assert httpx.delete(server.url + "/v1/users/x", headers=headers).status_code == 401
    assert not httpx.get(server.url + "/v1/users/guarded", headers=AUTH).json()["known"]


def test_deleting_a_user_forgets_them(server: Served) -> None:
    user = "to/forget é"  # opaque: any characters, sent escaped
    path = "/v1/users/" + quote(user, safe="")
    events = [{"user_id": user, "item_id": i, "type": "view"} for i in ("1", "2")]
    assert server.post("/v1/events", {"events": events}).json()["accepted"] == 2
    assert httpx.get(server.url + path, headers=AUTH).json()["history"] == ["1", "2"]
    gone = httpx.delete(server.url + path, headers=AUTH)
    assert gone.status_code == 200 and gone.json()["events_deleted"] == 2
    assert httpx.get(server.url + path, headers=AUTH).json() | {"id": None} == {
        "object": "user",
        "id": None,
        "collection": "ml-100k",
        "history": [],
        "consumed": [],
        "known": False,
    }
    too_long = httpx.delete(server.url + "/v1/users/" + "u" * 257, headers=AUTH)
    assert too_long.status_code == 400 and too_long.json()["error"]["param"] == "user_id"


def test_postgres_going_away_is_a_retryable_503_then_recovers(
    postgres, postgres_url, burst: Burst
) -> None:
    srv = serve(burst.home, GENREC_EVENTS_URL=postgres_url)  # the catalog is already there
    try:
        one = {"events": [{"user_id": "pg", "item_id": "50", "type": "view", "event_id": "1"}]}
        assert srv.post("/v1/events", one).json()["accepted"] == 1
        postgres.stop("immediate")
        try:
            down = srv.post("/v1/events", one)
            assert down.status_code == 503 and down.headers["retry-after"] == "2"
            assert down.json()["error"]["code"] == "store_unavailable"
            read = httpx.get(srv.url + "/v1/users/pg", headers=AUTH)
            assert read.status_code == 503
        finally:
            postgres.start()
        two = {"events": [{"user_id": "pg", "item_id": "172", "type": "view", "event_id": "2"}]}
        assert srv.post("/v1/events", two).json()["accepted"] == 1
        assert httpx.get(srv.url + "/v1/users/pg", headers=AUTH).json()["history"] == ["50", "172"]
    finally:
        srv.kill()


def test_the_server_log_has_no_tracebacks(server: Served) -> None:
    text = server.log.read_text(errors="replace")
    assert "Traceback" not in text, text[-3000:]
