"""`genrec serve` end to end: a real uvicorn server (subprocess) with the real engine and Chroma,
driven by the official openai client (sync and async, plain and streamed) and raw HTTP.

The server starts once for this module's session and is shared by every test (~40 s to start).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import pytest

from genrec.conversation import parse_answer
from genrec.data.catalog_files import load_dataset
from genrec.schema import Recommendation
from genrec.server.responses import RECOMMENDATIONS_SCHEMA
from tests.fixtures_catalog import free_port, stop_process

KEY = "test-key-" + "x" * 16
IN_FLIGHT = 8
MAX_BODY = 65536
START_TIMEOUT_S = 720


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    log: Path
    early: list[tuple[int, dict]] = field(default_factory=list)  # /health answers before ready
    early_chat: tuple[int, dict] | None = None  # a chat request sent while loading
    early_models: int | None = None

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def _get(url: str, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("serve-home")
    port = free_port()
    log = home / "server.log"
    env = {
        **os.environ,
        "GENREC_HOME": str(home),
        "GENREC_MODEL_CACHE": str(Path.home() / ".cache" / "genrec" / "models"),
        "GENREC_API_KEY": KEY,
        "GENREC_MAX_IN_FLIGHT": str(IN_FLIGHT),
        "GENREC_MAX_BODY_BYTES": str(MAX_BODY),
        "GENREC_ENGINE_TIMEOUT_S": "600",  # a machine busy with other engines starts slowly
        "GENREC_PROFILES": json.dumps({"genrec-quick": {"mode": "rank", "k": 3, "candidates": 8}}),
    }
    env.pop("GENREC_CONFIG", None)
    genrec = Path(sys.executable).parent / "genrec"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(genrec), "serve", "--port", str(port), "--log-level", "warning"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    srv = Server(f"http://127.0.0.1:{port}", proc, log)
    auth = {"Authorization": f"Bearer {KEY}"}
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"genrec serve exited with {proc.returncode}:\n{srv.tail()}")
            try:
                status, body = _get(srv.url + "/health")
            except OSError:
                status, body = 0, {}
            if status == 200:
                break
            if status == 503:
                srv.early.append((status, body))
                if srv.early_chat is None:
                    chat = {"model": "genrec", "messages": [{"role": "user", "content": "hi"}]}
                    srv.early_chat = httpx.post(
                        srv.v1 + "/chat/completions", json=chat, headers=auth
                    )
                    srv.early_chat = (srv.early_chat.status_code, srv.early_chat.json())
                    srv.early_models = httpx.get(srv.v1 + "/models", headers=auth).status_code
            if time.monotonic() > deadline:
                pytest.fail(f"genrec serve not ready in {START_TIMEOUT_S} s:\n{srv.tail()}")
            time.sleep(0.25)
        yield srv
    finally:
        stop_process(proc, timeout=60)


@pytest.fixture(scope="session")
def titles() -> dict[str, str]:
    return {it.id: it.title for it in load_dataset("ml-100k")}


@pytest.fixture(scope="session")
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.v1, api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def aclient(server: Server) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.v1, api_key=KEY, max_retries=0, timeout=120)


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def check_items(recs: list[dict], titles: dict[str, str], k: int) -> None:
    """Real catalog items, ranked 1..n, with the fields the API promises."""
    assert 0 < len(recs) <= k
    assert [r["rank"] for r in recs] == list(range(1, len(recs) + 1))
    assert len({r["id"] for r in recs}) == len(recs)
    for r in recs:
        assert titles[r["id"]] == r["title"]
        assert isinstance(r["score"], float)
        assert r["grounded_by"] in ("label", "exact", "normalized", "fuzzy", "embedding")


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of a Prometheus sample over the series matching `labels`."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


# --- start-up ------------------------------------------------------------------------------------


def test_health_says_503_until_ready_then_200(server: Server) -> None:
    assert server.early, "the server was never seen loading (503) before it was ready"
    assert all(body["status"] == "loading" for _, body in server.early)
    assert server.early_chat is not None and server.early_chat[0] == 503
    err = server.early_chat[1]["error"]
    assert err["code"] == "not_ready" and "starting" in err["message"]
    assert server.early_models == 200  # the profiles are known before the engine is
    status, body = _get(server.url + "/health")
    assert status == 200 and body["status"] == "ok" and body["model"]
    # the engine's thread binding in use (issue #12)
    assert body["engine"]["threads"] >= 1 and body["engine"]["threads_bind"] == "auto"


# --- models --------------------------------------------------------------------------------------


def test_models_are_the_profiles(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"genrec", "genrec-rank", "genrec-generate", "genrec-describe", "genrec-quick"} <= ids
    quick = client.models.retrieve("genrec-quick")
    assert quick.owned_by == "genrec"
    assert quick.model_extra["genrec"]["k"] == 3 and quick.model_extra["genrec"]["mode"] == "rank"
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("gpt-4o")
    assert info.value.param == "model"


# --- chat: sync, async, plain, streamed ----------------------------------------------------------


def test_chat_plain_sync(client: openai.OpenAI, titles: dict[str, str]) -> None:
    resp = client.chat.completions.create(
        model="genrec",
        messages=[user("a space adventure with robots and rebels")],
        extra_body={"k": 5},
    )
    assert resp.object == "chat.completion" and resp.model == "genrec"
    assert resp.id.startswith("chatcmpl-")
    choice = resp.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    recs = resp.model_extra["recommendations"]
    check_items(recs, titles, 5)
    # the text is genrec's numbered list, and it reads back to the same items
    assert [x.id for x in parse_answer(choice.message.content)] == [r["id"] for r in recs]
    # each line shows the item's genres, from the records the result carries
    for r in recs:
        assert re.search(rf" — \w[^\n]* \[id: {r['id']}\]", choice.message.content), r
    extra = resp.model_extra["genrec"]
    assert extra["mode"] == "rank" and extra["profile"] == "genrec"
    assert extra["timings"]["total_ms"] > 0 and extra["candidates"] > 0
    u = resp.usage
    assert u.prompt_tokens > 0 and u.total_tokens == u.prompt_tokens + u.completion_tokens


def stream_parts(chunks: list) -> tuple[str, list, list]:
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    usage = [c for c in chunks if not c.choices]
    return content, finals, usage


def test_chat_streamed_sync(client: openai.OpenAI, titles: dict[str, str]) -> None:
    messages = [user("a funny animated film for children")]
    stream = client.chat.completions.create(
        model="genrec-quick", messages=messages, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    content, finals, usage = stream_parts(chunks)
    assert len(finals) == 1 and finals[0].choices[0].finish_reason == "stop"
    recs = finals[0].model_extra["recommendations"]
    check_items(recs, titles, 3)
    # one item per delta: header + one per item
    deltas = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) == 1 + len(recs)
    assert [x.id for x in parse_answer(content)] == [r["id"] for r in recs]
    assert len(usage) == 1 and usage[0].usage.prompt_tokens > 0
    assert chunks[-1] is usage[0]  # the usage chunk comes last, before [DONE]
    # the same request unstreamed says the same thing
    plain = client.chat.completions.create(model="genrec-quick", messages=messages)
    assert plain.choices[0].message.content == content


async def test_chat_async_plain_and_streamed(
    aclient: openai.AsyncOpenAI, titles: dict[str, str]
) -> None:
    queries = ["a romantic comedy", "a gritty crime thriller", "a western"]
    answers = await asyncio.gather(
        *[
            aclient.chat.completions.create(model="genrec-quick", messages=[user(q)])
            for q in queries
        ]
    )
    for resp in answers:
        check_items(resp.model_extra["recommendations"], titles, 3)
    stream = await aclient.chat.completions.create(
        model="genrec-quick", messages=[user("a western")], stream=True
    )
    chunks = [c async for c in stream]
    content, finals, usage = stream_parts(chunks)
    assert not usage  # not asked for
    assert content == answers[2].choices[0].message.content


# --- conversations -------------------------------------------------------------------------------


def test_multi_turn_conversation(client: openai.OpenAI, titles: dict[str, str]) -> None:
    films = {it.id: it for it in load_dataset("ml-100k")}
    messages = [
        {"role": "system", "content": "You recommend films."},
        user("I loved Toy Story. Something similar?"),
    ]
    first = client.chat.completions.create(model="genrec", messages=messages, extra_body={"k": 4})
    picks = [r["id"] for r in first.model_extra["recommendations"]]
    assert "1" not in picks  # what the user named is history, not a recommendation
    assert first.model_extra["genrec"]["history"] == ["1"]
    messages += [
        {"role": "assistant", "content": first.choices[0].message.content},
        user("more like the second one, but newer"),
    ]
    second = client.chat.completions.create(model="genrec", messages=messages, extra_body={"k": 4})
    extra = second.model_extra["genrec"]
    assert extra["referenced"] == [picks[1]]
    assert extra["history"] == ["1", picks[1]]
    assert set(extra["exclude"]) == {picks[0], picks[2], picks[3]}
    year = films[picks[1]].attributes["year"]
    assert extra["filters"] == {"year": {"$gt": year}}  # "newer" than the second one
    recs = second.model_extra["recommendations"]
    if year < 1997:  # ML-100K ends in 1998: something newer exists
        check_items(recs, titles, 4)
    assert all(films[r["id"]].attributes["year"] > year for r in recs)
    again = [r["id"] for r in recs]
    assert not set(again) & set(picks) and "1" not in again


# --- options -------------------------------------------------------------------------------------


def test_response_format_json(client: openai.OpenAI, titles: dict[str, str]) -> None:
    resp = client.chat.completions.create(
        model="genrec-quick",
        messages=[user("a horror film")],
        response_format={"type": "json_object"},
    )
    doc = json.loads(resp.choices[0].message.content)
    assert doc["recommendations"] == resp.model_extra["recommendations"]
    resp = client.chat.completions.create(
        model="genrec-quick",
        messages=[user("a horror film")],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "recs", "schema": RECOMMENDATIONS_SCHEMA},
        },
    )
    check_items(json.loads(resp.choices[0].message.content)["recommendations"], titles, 3)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="genrec-quick",
            messages=[user("a horror film")],
            response_format={
                "type": "json_schema",
                "json_schema": {
                    "name": "answer",
                    "schema": {"type": "object", "required": ["answer"]},
                },
            },
        )
    assert info.value.param == "response_format.json_schema.schema"


@pytest.mark.parametrize("model", ["genrec-generate", "genrec-describe"])
def test_every_mode_answers(client: openai.OpenAI, titles: dict[str, str], model: str) -> None:
    resp = client.chat.completions.create(
        model=model,
        messages=[user("a science fiction classic")],
        temperature=0,
        seed=1,
        user="tester",
        extra_body={"k": 3, "filters": {"year": {"$lt": 1990}}},
    )
    assert resp.model_extra["genrec"]["mode"] == model.removeprefix("genrec-")
    recs = resp.model_extra["recommendations"]
    assert recs, resp.choices[0].message.content  # constrained to candidates: never empty
    check_items(recs, titles, 3)
    # generate sizes its own list (max_tokens does not cut it); describe may be cut
    allowed = ("stop",) if model == "genrec-generate" else ("stop", "length")
    assert resp.choices[0].finish_reason in allowed
    assert resp.usage.completion_tokens > 0  # these modes write text


def test_filters_and_exclude_are_honoured(client: openai.OpenAI) -> None:
    films = {it.id: it for it in load_dataset("ml-100k")}
    resp = client.chat.completions.create(
        model="genrec",
        messages=[user("an adventure")],
        extra_body={"k": 5, "filters": {"year": {"$gte": 1997}}, "exclude": ["50"]},
    )
    recs = resp.model_extra["recommendations"]
    assert recs  # ML-100K has hundreds of 1997-98 films: an empty answer would prove nothing
    for r in recs:
        assert films[r["id"]].attributes["year"] >= 1997 and r["id"] != "50"


def test_native_recommendations_route(server: Server, titles: dict[str, str]) -> None:
    resp = httpx.post(
        server.v1 + "/recommendations",
        json={"query": "a mafia drama", "history": ["Godfather, The"], "k": 3},
        headers=auth(),
        timeout=60,
    )
    assert resp.status_code == 200, resp.text
    rec = Recommendation.model_validate(resp.json())
    check_items([it.model_dump() for it in rec.items], titles, 3)
    assert "127" not in [it.id for it in rec.items]  # The Godfather is the history
    bad = httpx.post(server.v1 + "/recommendations", json={"query": "x", "k": 0}, headers=auth())
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "k"


# --- errors --------------------------------------------------------------------------------------


def test_openai_client_errors(client: openai.OpenAI, server: Server) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="genrec", messages=[user("x")], n=2)
    assert info.value.param == "n"
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model="genrec",
            messages=[user("x")],
            tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
        )
    assert info.value.param == "tools"
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-4o", messages=[user("x")])
    assert info.value.code == "model_not_found"
    wrong = openai.OpenAI(base_url=server.v1, api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        wrong.chat.completions.create(model="genrec", messages=[user("x")])
    assert info.value.code == "invalid_api_key"
    with pytest.raises(openai.BadRequestError) as info:  # unknown history item
        client.chat.completions.create(
            model="genrec", messages=[user("x")], extra_body={"history": ["no such film 1234"]}
        )
    assert info.value.param == "history"


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b'{"model": "genrec", "messages": [', 400, None),
        (b"[]", 400, None),
        (
            b'{"model": "genrec", "messages": [{"role": "user", "content": 5}]}',
            400,
            "messages[0].content",
        ),
        (
            b'{"model": "genrec", "messages": [{"role": "user", "content": "x"}], "k": "ten"}',
            400,
            "k",
        ),
        (
            b'{"model": "genrec", "messages": [{"role": "user", "content": "x"}], "filter": {}}',
            400,
            "filter",
        ),
    ],
)
def test_malformed_bodies_are_400_never_422(
    server: Server, body: bytes, status: int, param: str | None
) -> None:
    resp = httpx.post(
        server.v1 + "/chat/completions",
        content=body,
        headers={**auth(), "Content-Type": "application/json"},
    )
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param
    assert set(err) == {"message", "type", "param", "code"}


def test_keys_on_every_v1_route(server: Server) -> None:
    for method, path in [("GET", "/models"), ("GET", "/models/genrec"),
                         ("POST", "/chat/completions"), ("POST", "/recommendations")]:  # fmt: skip
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": KEY}):
            resp = httpx.request(method, server.v1 + path, headers=headers, json={})
            assert resp.status_code == 401, (method, path, headers)
            assert resp.json()["error"]["code"] == "invalid_api_key"
            assert resp.headers["www-authenticate"] == "Bearer"
    assert httpx.get(server.url + "/health").status_code == 200  # open, for probes
    assert httpx.get(server.url + "/metrics").status_code == 200


def test_oversized_bodies_are_413(server: Server) -> None:
    big = json.dumps({"model": "genrec", "messages": [user("x" * (MAX_BODY + 10))]}).encode()
    resp = httpx.post(
        server.v1 + "/chat/completions", content=big,
        headers={**auth(), "Content-Type": "application/json"},
    )  # fmt: skip
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "request_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the streamed size is what counts
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    resp = httpx.post(
        server.v1 + "/chat/completions", content=chunks(),
        headers={**auth(), "Content-Type": "application/json"},
    )  # fmt: skip
    assert "content-length" not in resp.request.headers
    assert resp.status_code == 413


def test_error_after_the_stream_started_is_an_error_chunk(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="genrec",
        messages=[user("a comedy")],
        stream=True,
        extra_body={"filters": {"year": {"$between": [1, 2]}}},
    )
    got = []
    with pytest.raises(openai.APIError) as info:
        for c in stream:
            got.append(c)
    assert got and got[0].choices[0].delta.role == "assistant"  # the stream had started
    assert info.value.type == "invalid_request_error"
    # unstreamed, the same request is a plain 400
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="genrec",
            messages=[user("a comedy")],
            extra_body={"filters": {"year": {"$between": [1, 2]}}},
        )


def test_unknown_routes_are_openai_errors(server: Server) -> None:
    resp = httpx.get(server.url + "/v2/nothing")
    assert resp.status_code == 404 and resp.json()["error"]["type"] == "invalid_request_error"


# --- disconnects, load, metrics ------------------------------------------------------------------


def scrape(server: Server) -> str:
    return httpx.get(server.url + "/metrics").text


def wait_for(predicate, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_client_disconnect_cancels_the_work(server: Server) -> None:
    route = "/v1/chat/completions"
    before = metric(scrape(server), "genrec_http_requests_total", route=route, outcome="cancelled")
    body = {
        "model": "genrec-generate",
        "messages": [user("a long epic about a war")],
        "k": 10,
        "candidates": 40,
    }
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.v1 + "/chat/completions", json=body, headers=auth(), timeout=0.2)
    with httpx.stream(
        "POST", server.v1 + "/chat/completions", json={**body, "stream": True},
        headers=auth(), timeout=30,
    ) as resp:  # fmt: skip
        first = next(resp.iter_lines())
        assert first.startswith("data: ") and '"role": "assistant"' in first
    # leaving the block closed the connection before the answer came

    def cancelled() -> bool:
        text = scrape(server)
        n = metric(text, "genrec_http_requests_total", route=route, outcome="cancelled")
        return n >= before + 2 and metric(text, "genrec_in_flight_requests") == 0

    assert wait_for(cancelled), scrape(server)


async def test_load_32_concurrent_against_in_flight_8(
    server: Server, titles: dict[str, str]
) -> None:
    async with httpx.AsyncClient(
        headers=auth(), timeout=180, limits=httpx.Limits(max_connections=64)
    ) as http:

        async def one(i: int) -> httpx.Response:
            body = {"model": "genrec", "messages": [user(f"a film about topic {i}")], "k": 3}
            return await http.post(server.v1 + "/chat/completions", json=body)

        answers = await asyncio.gather(*[one(i) for i in range(32)])
    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {200, 429}, statuses
    assert statuses.count(200) >= 1 and statuses.count(429) >= 1, statuses
    for r in answers:
        if r.status_code == 200:
            check_items(r.json()["recommendations"], titles, 3)
        else:
            assert r.headers["retry-after"] == "1"
            assert r.json()["error"]["type"] == "rate_limit_error"
    assert httpx.get(server.url + "/health").status_code == 200
    text = scrape(server)
    assert metric(text, "genrec_in_flight_requests") == 0
    assert metric(text, "genrec_http_requests_total", outcome="rate_limited") >= 1


def test_metrics_by_route_mode_and_outcome(server: Server) -> None:
    text = scrape(server)
    chat = "/v1/chat/completions"
    assert metric(text, "genrec_http_requests_total", route=chat, mode="rank", outcome="ok") >= 1
    assert metric(text, "genrec_http_requests_total", route=chat, outcome="invalid") >= 1
    assert (
        metric(text, "genrec_http_requests_total", route="/v1/models", outcome="unauthorized") >= 1
    )
    assert metric(text, "genrec_http_request_duration_seconds_count", route=chat, mode="rank") >= 1
    assert metric(text, "genrec_stage_duration_seconds_count", mode="rank", stage="llm") >= 1
    assert metric(text, "genrec_tokens_total", kind="prompt") > 0
    assert metric(text, "genrec_ready") == 1


def test_bench_serve_prints_one_json_document(server: Server) -> None:
    genrec = Path(sys.executable).parent / "genrec"
    out = subprocess.run(
        [str(genrec), "bench", "serve", "--url", server.url, "--requests", "4",
         "--concurrency", "2", "--k", "3", "--model", "genrec-quick"],
        capture_output=True, text=True, timeout=180,
        env={**os.environ, "GENREC_API_KEY": KEY},
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["statuses"] == {"200": 4}
    assert doc["latency_ms"]["p50"] > 0 and doc["server_total_ms"]["p50"] > 0


def test_serve_exits_non_zero_when_start_up_fails(tmp_path: Path) -> None:
    genrec = Path(sys.executable).parent / "genrec"
    env = {**os.environ, "GENREC_HOME": str(tmp_path), "GENREC_DATASET": "no-such-dataset"}
    out = subprocess.run(
        [str(genrec), "serve", "--port", str(free_port()), "--log-level", "warning"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert out.returncode == 1
    assert "genrec failed to start: unknown dataset 'no-such-dataset'" in out.stderr
    assert "Traceback" not in out.stderr  # a known problem is one clear line, not a stack


# --- last: it kills the server's engine ----------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            out += [child, *_descendants(child)]
    return out


# --- events and user state (genrec.events) --------------------------------------------------------


def test_chat_user_reads_the_users_stored_events(server: Server, client: openai.OpenAI) -> None:
    uid = "chat-user-events"
    events = [{"user_id": uid, "item_id": i, "type": "view"} for i in ("50", "172")]
    events.append({"user_id": uid, "item_id": "181", "type": "purchase"})
    recorded = httpx.post(server.v1 + "/events", json={"events": events}, headers=auth())
    assert recorded.status_code == 200 and recorded.json()["accepted"] == 3
    resp = client.chat.completions.create(
        model="genrec", messages=[user("something for tonight")], user=uid, extra_body={"k": 3}
    )
    assert resp.genrec["user"] == {
        "id": uid,
        "history": ["50", "172", "181"],
        "excluded": 0,
        "cold_start": False,
    }
    assert not {"50", "172", "181"} & {r["id"] for r in resp.recommendations}
    # another user of the same server starts cold
    other = client.chat.completions.create(
        model="genrec", messages=[user("something for tonight")], user="someone-else"
    )
    assert other.genrec["user"]["history"] == []
    # a user nobody knows, and nothing else: a cold-start answer (popular items), not an error
    cold = httpx.post(
        server.v1 + "/recommendations", json={"user_id": "never-seen", "k": 3}, headers=auth()
    )
    assert cold.status_code == 200, cold.text
    assert cold.json()["user"]["cold_start"] and len(cold.json()["items"]) == 3


def test_zz_engine_death_is_a_503_not_a_crash(server: Server, client: openai.OpenAI) -> None:
    """Runs last (file order): the server's engine is dead afterwards."""
    engines = [
        pid
        for pid in _descendants(server.proc.pid)
        if "EngineCore" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    ]
    if not engines:
        pytest.skip("no vLLM EngineCore child process found to stop (not on Linux /proc?)")
    for pid in engines:
        os.kill(pid, 9)  # a child of the server this test started
    with pytest.raises(openai.APIStatusError) as info:  # either noticed now, or already dead
        for _ in range(50):
            client.chat.completions.create(model="genrec-quick", messages=[user("a comedy")])
            time.sleep(0.2)
    assert info.value.status_code == 503, info.value
    assert "Traceback" not in str(info.value.body)
    assert wait_for(lambda: httpx.get(server.url + "/health").status_code == 503, 30)
    assert httpx.get(server.url + "/health").json()["status"] == "unhealthy"
    assert server.proc.poll() is None  # still serving: 503s, /metrics, /v1/models
    assert httpx.get(server.v1 + "/models", headers=auth()).status_code == 200
