"""The wire schema is strict and bounded: a catalogue of wrong and oversized values per field, each
refused as a 400 naming the field (a 413 for a body over the limit), never a 200, a 422 or a 5xx,
and refused before any catalog or engine work.

Three levels, one catalogue:
- the request models directly (fast, exact param names);
- a real uvicorn server (in this process, on the session's event loop) around a Recommender whose
  engine never started: every catalogue entry is still a 400, while a valid request is the
  engine's 503, so each refusal happened before the route ran (no mapping, no store, no engine);
- the same server around the session's real Recommender, driven by the official openai client:
  a representative set of refusals, the bounds' extreme values answered with 200, and a filter
  that the store itself refuses turned into a 400.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
import pytest_asyncio
import uvicorn
from pydantic import ValidationError

import genrec.filters
from genrec.errors import InvalidRequest
from genrec.evaluation.cells import request_for
from genrec.evaluation.prepare import PreparedCell
from genrec.evaluation.splits import EvalCase
from genrec.evaluation.suite import load_suite
from genrec.filters import MAX_DEPTH, MAX_NODES, validate_where
from genrec.index import CatalogIndex
from genrec.recommender import Recommender
from genrec.schema import MAX_EXCLUDE, MAX_HISTORY, RecommendRequest
from genrec.server.app import create_app
from genrec.server.errors import from_validation, http_status
from genrec.server.openai_schema import (
    MAX_CONVERSATION_CHARS,
    MAX_MESSAGES,
    ChatCompletionRequest,
)
from genrec.settings import Settings
from tests.fixtures_catalog import free_port

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
NAN = float("nan")
INF = float("inf")
LONE_SURROGATE = "caf\ud800"  # JSON's "\ud800" escape: no encoder takes it


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def ands(n: int) -> dict:
    """A flat $and of n conditions (n + 1 nodes)."""
    return {"$and": [{"year": {"$gte": 1900 - i}} for i in range(n)]}


def nested(depth: int) -> dict:
    """$and nested so the innermost condition is at `depth` levels."""
    where: dict = {"year": {"$gte": 1900}}
    for _ in range(depth - 1):
        where = {"$and": [where, {"year": {"$lte": 2100}}]}
    return where


def schema_format(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "recs", "schema": schema}}


def deep_schema(levels: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"a": schema}}
    return schema


SIX_THOUSAND = [user("I loved Toy Story and want more like it") for _ in range(6000)]

# (field overrides of a valid chat request, the param the 400 must name)
CHAT_CASES: list[tuple[dict[str, Any], str]] = [
    # model
    ({"model": 5}, "model"),
    ({"model": ""}, "model"),
    ({"model": "m" * 257}, "model"),
    ({"model": None}, "model"),
    # messages: shape, types, the conversation's bounds
    ({"messages": []}, "messages"),
    ({"messages": "hi"}, "messages"),
    ({"messages": SIX_THOUSAND}, "messages"),
    ({"messages": [user("x")] * (MAX_MESSAGES + 1)}, "messages"),
    ({"messages": [user("x" * (MAX_CONVERSATION_CHARS + 1))]}, "messages"),
    ({"messages": [user("x" * 60_000), user("y" * 60_000)]}, "messages"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": 1, "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": True}]}, "messages[0].content"),
    ({"messages": [user(LONE_SURROGATE)]}, "messages[0].content"),
    (
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}] * 101}]},
        "messages[0].content",
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
        "messages[0].content[0].text",
    ),
    ({"messages": [{"role": "user", "content": "x", "name": 5}]}, "messages[0].name"),
    # stream
    ({"stream": "yes"}, "stream"),
    ({"stream": "true"}, "stream"),
    ({"stream": 1}, "stream"),
    ({"stream": 0}, "stream"),
    ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
    ({"stream_options": "usage"}, "stream_options"),
    # token limits
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": -1}, "max_tokens"),
    ({"max_tokens": 4097}, "max_tokens"),
    ({"max_tokens": 2**64}, "max_tokens"),
    ({"max_tokens": 10.0}, "max_tokens"),
    ({"max_tokens": "10"}, "max_tokens"),
    ({"max_tokens": True}, "max_tokens"),
    ({"max_completion_tokens": 0}, "max_completion_tokens"),
    ({"max_completion_tokens": 1.5}, "max_completion_tokens"),
    # temperature (0..2; a JSON integer is a number)
    ({"temperature": -0.1}, "temperature"),
    ({"temperature": 2.01}, "temperature"),
    ({"temperature": 3}, "temperature"),
    ({"temperature": "1"}, "temperature"),
    ({"temperature": True}, "temperature"),
    ({"temperature": NAN}, "temperature"),
    ({"temperature": INF}, "temperature"),
    ({"temperature": 10**400}, "temperature"),
    # seed: signed 64 bits
    ({"seed": INT64_MAX + 1}, "seed"),
    ({"seed": INT64_MIN - 1}, "seed"),
    ({"seed": 2**70}, "seed"),
    ({"seed": 7.0}, "seed"),
    ({"seed": 1e20}, "seed"),
    ({"seed": "7"}, "seed"),
    ({"seed": True}, "seed"),
    # OpenAI's other fields, accepted and ignored but bounded as OpenAI bounds them
    ({"user": 5}, "user"),
    ({"user": "u" * 257}, "user"),
    ({"n": 0}, "n"),
    ({"n": 2}, "n"),
    ({"n": 129}, "n"),
    ({"n": 1.0}, "n"),
    ({"n": "1"}, "n"),
    ({"logprobs": "false"}, "logprobs"),
    ({"logprobs": 0}, "logprobs"),
    ({"top_logprobs": -1}, "top_logprobs"),
    ({"top_logprobs": 21}, "top_logprobs"),
    ({"top_logprobs": 2.0}, "top_logprobs"),
    ({"top_p": -0.1}, "top_p"),
    ({"top_p": 1.1}, "top_p"),
    ({"top_p": "1"}, "top_p"),
    ({"frequency_penalty": 2.5}, "frequency_penalty"),
    ({"frequency_penalty": -3}, "frequency_penalty"),
    ({"frequency_penalty": "0"}, "frequency_penalty"),
    ({"presence_penalty": 2.1}, "presence_penalty"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"stop": 5}, "stop"),
    ({"stop": ["s" * 257]}, "stop[0]"),
    ({"logit_bias": {"50256": 101}}, "logit_bias.50256"),
    ({"logit_bias": {"50256": -101}}, "logit_bias.50256"),
    ({"logit_bias": {"50256": 1.5}}, "logit_bias.50256"),
    ({"logit_bias": {"50256": "1"}}, "logit_bias.50256"),
    ({"logit_bias": {str(i): 1 for i in range(1025)}}, "logit_bias"),
    ({"metadata": {"a": 1}}, "metadata.a"),
    ({"metadata": {"a": "v" * 513}}, "metadata.a"),
    ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
    ({"store": "yes"}, "store"),
    ({"parallel_tool_calls": 1}, "parallel_tool_calls"),
    ({"service_tier": 5}, "service_tier"),
    ({"service_tier": "t" * 257}, "service_tier"),
    ({"reasoning_effort": ["low"]}, "reasoning_effort"),
    ({"verbosity": 3}, "verbosity"),
    ({"prompt_cache_key": 5}, "prompt_cache_key"),
    ({"safety_identifier": "s" * 129}, "safety_identifier"),
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    # response_format: its JSON schema is bounded before anything checks it
    ({"response_format": {"type": "xml"}}, "response_format.type"),
    ({"response_format": "json"}, "response_format"),
    (
        {"response_format": {"type": "json_schema", "json_schema": {"name": "n" * 65}}},
        "response_format.json_schema.name",
    ),
    (
        {"response_format": schema_format({"anyOf": [{"type": "object"}] * 300})},
        "response_format.json_schema.schema",
    ),
    (
        {"response_format": schema_format(deep_schema(40))},
        "response_format.json_schema.schema",
    ),
    (
        {"response_format": schema_format({"type": "string", "pattern": "(" * 600 + ")" * 600})},
        "response_format.json_schema.schema",
    ),
    (
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "recs", "strict": "yes"},
            }
        },
        "response_format.json_schema.strict",
    ),
    # genrec's own options
    ({"history": "50"}, "history"),
    ({"history": [50]}, "history[0]"),
    ({"history": ["h" * 513]}, "history[0]"),
    ({"history": [LONE_SURROGATE]}, "history[0]"),
    ({"history": ["50"] * 201}, "history"),
    ({"user_id": 5}, "user_id"),
    ({"user_id": "u" * 257}, "user_id"),
    ({"k": 0}, "k"),
    ({"k": 101}, "k"),
    ({"k": "5"}, "k"),
    ({"k": 5.0}, "k"),
    ({"k": True}, "k"),
    ({"candidates": 0}, "candidates"),
    ({"candidates": 201}, "candidates"),
    ({"candidates": "20"}, "candidates"),
    ({"candidates": 20.0}, "candidates"),
    ({"filters": "year > 1990"}, "filters"),
    ({"filters": [{"year": 1990}]}, "filters"),
    ({"filters": ands(2000)}, "filters"),
    ({"filters": ands(MAX_NODES)}, "filters"),
    ({"filters": nested(MAX_DEPTH + 1)}, "filters"),
    ({"filters": nested(300)}, "filters"),  # Chroma: "Invalid where clause" past 62
    ({"filters": {"year": {"$in": list(range(MAX_NODES))}}}, "filters"),
    ({"filters": {"year": NAN}}, "filters"),
    ({"filters": {"year": {"$gt": INF}}}, "filters"),
    ({"filters": {"year": 2**63}}, "filters"),
    ({"filters": {"title": "t" * 1001}}, "filters"),
    ({"filters": {"t" * 1001: "x"}}, "filters"),
    ({"filters": {"title": LONE_SURROGATE}}, "filters"),
    ({"filters": {"year": {"$in": [[1990]]}}}, "filters"),
    ({"filters": {"$and": [[{"year": 1}], [{"year": 2}]]}}, "filters"),
    ({"exclude": "50"}, "exclude"),
    ({"exclude": [50]}, "exclude[0]"),
    ({"exclude": ["1"] * (MAX_EXCLUDE + 1)}, "exclude"),
    ({"mode": "guess"}, "mode"),
    ({"mode": 1}, "mode"),
    ({"template": 5}, "template"),
    # unknown fields (typos) are named, not ignored
    ({"filter": {"year": 1995}}, "filter"),
    ({"temprature": 0.5}, "temprature"),
]

# (a native POST /v1/recommendations body, the param the 400 must name)
NATIVE_CASES: list[tuple[dict[str, Any], str]] = [
    ({"query": 5}, "query"),
    ({"query": "q" * 4001}, "query"),
    ({"query": LONE_SURROGATE}, "query"),
    ({"history": "50"}, "history"),
    ({"history": [50]}, "history[0]"),
    ({"history": ["50"] * 201}, "history"),
    ({"k": "5"}, "k"),
    ({"k": 5.0}, "k"),
    ({"k": True}, "k"),
    ({"k": 0}, "k"),
    ({"candidates": 201}, "candidates"),
    ({"candidates": 20.5}, "candidates"),
    ({"temperature": "0"}, "temperature"),
    ({"temperature": True}, "temperature"),
    ({"temperature": 2.5}, "temperature"),
    ({"temperature": NAN}, "temperature"),
    ({"seed": INT64_MAX + 1}, "seed"),
    ({"seed": "1"}, "seed"),
    ({"seed": 1.0}, "seed"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": 4097}, "max_tokens"),
    ({"max_tokens": 64.0}, "max_tokens"),
    ({"filters": ands(2000)}, "filters"),
    ({"filters": nested(MAX_DEPTH + 1)}, "filters"),
    ({"filters": {"year": 2**63}}, "filters"),
    ({"filters": "year > 1990"}, "filters"),
    ({"exclude": ["1"] * (MAX_EXCLUDE + 1)}, "exclude"),
    ({"exclude": [1]}, "exclude[0]"),
    ({"mode": "guess"}, "mode"),
    ({"template": 5}, "template"),
    ({"system": "s" * 4001}, "system"),
    ({"user_id": 5}, "user_id"),
    ({"filter": {"year": 1995}}, "filter"),
]


def chat_body(fields: dict[str, Any]) -> dict[str, Any]:
    return {"model": "genrec", "messages": [user("a comedy")], **fields}


def native_body(fields: dict[str, Any]) -> dict[str, Any]:
    return {"history": ["50", "172"], "k": 3, **fields}


def wire(body: Any) -> bytes:
    """The body as a client sends it; NaN and Infinity as Python's json writes them (and reads
    them back on the server: they are values the models must refuse, not parse errors)."""
    return json.dumps(body).encode()


def over_the_wire(body: Any) -> Any:
    """What FastAPI hands the model: the body after a JSON round trip."""
    return json.loads(wire(body))


def case_id(case: tuple[dict[str, Any], str]) -> str:
    fields, param = case
    return f"{param}={json.dumps(fields)[:40]}"


def assert_400_naming(err: InvalidRequest, param: str) -> None:
    assert http_status(err) == 400
    assert err.param == param, err.message
    assert err.message.startswith(param), err.message


# --- the models, directly ------------------------------------------------------------------------


@pytest.mark.parametrize("case", CHAT_CASES, ids=case_id)
def test_chat_model_refuses_naming_the_field(case: tuple[dict[str, Any], str]) -> None:
    fields, param = case
    with pytest.raises(ValidationError) as info:
        ChatCompletionRequest.model_validate(over_the_wire(chat_body(fields)))
    assert_400_naming(from_validation(info.value.errors()), param)


@pytest.mark.parametrize("case", NATIVE_CASES, ids=case_id)
def test_native_model_refuses_naming_the_field(case: tuple[dict[str, Any], str]) -> None:
    fields, param = case
    with pytest.raises(ValidationError) as info:
        RecommendRequest.model_validate(over_the_wire(native_body(fields)))
    # FastAPI puts the body's errors under "body": `query` is then the field, not the location.
    errors = [{**e, "loc": ("body", *e["loc"])} for e in info.value.errors()]
    assert_400_naming(from_validation(errors), param)


@pytest.mark.parametrize(
    "fields",
    [
        {"temperature": 0},
        {"temperature": 1},  # a JSON integer where a number belongs
        {"temperature": 2},
        {"temperature": 0.7},
        {"top_p": 0},
        {"top_p": 1},
        {"seed": INT64_MAX},
        {"seed": INT64_MIN},
        {"seed": 0},
        {"max_tokens": 1},
        {"max_tokens": 4096},
        {"max_completion_tokens": 4096},
        {"n": 1},
        {"stream": True},
        {"stream": False},
        {"stream": None},
        {"frequency_penalty": -2, "presence_penalty": 2},
        {"top_logprobs": 0},
        {"logprobs": False},
        {"stop": ["a", "b", "c", "d"]},
        {"logit_bias": {"50256": -100, "11": 100}},
        {"metadata": {f"k{i}": "v" * 512 for i in range(16)}},
        {"k": 1, "candidates": 200},
        {"k": 100},
        {"history": ["50"] * 200},
        {"filters": ands(MAX_NODES - 1)},  # the $and and 255 conditions: 256 nodes
        {"filters": nested(MAX_DEPTH)},
        {"filters": {"year": {"$in": list(range(MAX_NODES - 1))}}},
        {"filters": {"year": INT64_MAX}},
        {"filters": {"title": "café ☕ 🎬"}},  # real non-ASCII text, surrogate pairs joined
        {"messages": [user("x")] * MAX_MESSAGES},
        {"messages": [user("x" * MAX_CONVERSATION_CHARS)]},
        {"messages": [user("🎬 ☕")]},
        {"response_format": schema_format(deep_schema(10))},
        {"user": "u" * 256, "user_id": "u" * 256},
    ],
    ids=lambda f: json.dumps(f)[:50],
)
def test_chat_model_takes_the_extremes_of_each_bound(fields: dict[str, Any]) -> None:
    body = ChatCompletionRequest.model_validate(over_the_wire(chat_body(fields)))
    for name, value in fields.items():
        assert getattr(body, name) is not None or value is None
        if isinstance(value, int | float | str) and name != "messages":
            assert getattr(body, name) == value, name
    if "temperature" in fields:
        assert isinstance(body.temperature, float)  # 1 is taken as 1.0


def test_python_callers_still_build_requests() -> None:
    """Strict scalars, lax containers: the Python API, the CLI and the evaluation build their
    requests as before (a tuple history, an integer temperature)."""
    from genrec.cli.core import _request

    req = RecommendRequest(history=("50", "172"), k=3, temperature=1, seed=INT64_MIN)
    assert req.history == ["50", "172"] and req.temperature == 1.0
    assert isinstance(req.temperature, float)
    cli = _request(query="space", history=["50"], k=3, candidates=None, mode="rank", exclude=[])
    assert (cli.query, cli.k, cli.mode, cli.candidates) == ("space", 3, "rank", None)

    suite = load_suite("eval/smoke.yaml")
    cell = PreparedCell(spec=suite.cells()[0], settings=Settings(), cases=[], fingerprint={})
    # A heavy rater: the evaluation excludes the older part of the history.
    case = EvalCase(user_id="7", history=tuple(str(i) for i in range(12_000)), target="x")
    req = request_for(case, cell, suite)
    assert len(req.history) == MAX_HISTORY and len(req.exclude) == 12_000 - MAX_HISTORY

    for wrong in ({"k": 3.0}, {"k": "3"}, {"k": True}, {"seed": 2**63}, {"temperature": "0"}):
        with pytest.raises(ValidationError):
            RecommendRequest(history=["50"], **wrong)


def test_filter_bounds_are_checked_without_recursion_and_name_the_field() -> None:
    deep = nested(100_000)  # deeper than Python's recursion limit
    with pytest.raises(InvalidRequest) as info:
        validate_where(deep, param="filters")
    assert_400_naming_bad(info.value, "filters")
    assert "8 levels" in info.value.message
    with pytest.raises(InvalidRequest) as info:
        validate_where({"year": {"$in": list(range(1_000_000))}}, param="filters")
    assert_400_naming_bad(info.value, "filters")
    assert str(MAX_NODES) in info.value.message
    # The grammar Chroma's own check lets through and its query then refuses:
    for where in ({"year": {"$eq": [1]}}, {"$foo": 1}, {"year": {"$in": [[1]]}}):
        with pytest.raises(InvalidRequest) as info:
            validate_where(where, param="filters")
        assert_400_naming_bad(info.value, "filters")
    assert validate_where(ands(MAX_NODES - 1)) == ands(MAX_NODES - 1)
    assert validate_where(nested(MAX_DEPTH)) == nested(MAX_DEPTH)


def assert_400_naming_bad(err: InvalidRequest, param: str) -> None:
    assert http_status(err) == 400 and err.param == param
    assert err.message.startswith(f"bad {param}: "), err.message


def test_store_refusal_of_a_filter_is_a_400(
    ml100k_index: CatalogIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the bounds lifted, 2,000 $and clauses reach Chroma, which fails ("Expression tree is
    too large", an internal error): the index names the filter, it is not a 500."""
    monkeypatch.setattr(genrec.filters, "MAX_NODES", 100_000)
    with pytest.raises(InvalidRequest) as info:
        ml100k_index.search("a comedy", k=5, where=ands(2000))
    assert_400_naming_bad(info.value, "where")
    assert "rejected" in info.value.message
    # the same search under a filter the store takes still works
    assert len(ml100k_index.search("a comedy", k=5, where=ands(200))) == 5


# --- servers -------------------------------------------------------------------------------------


async def serve(app: Any) -> AsyncIterator[str]:
    """A real uvicorn server for `app` on this (the session's) event loop."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def cold_url(settings: Settings) -> AsyncIterator[str]:
    """A server around a Recommender that was never started (no engine, no tokenizer): anything
    that gets into a route is a 503, so a 400 from it was refused before the route ran."""
    async for url in serve(create_app(settings, recommender=Recommender(settings))):
        yield url


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def live_url(settings: Settings, recommender: Recommender) -> AsyncIterator[str]:
    """A server around the session's real Recommender (the one engine of the test session)."""
    async for url in serve(create_app(settings, recommender=recommender)):
        yield url


@pytest_asyncio.fixture(loop_scope="session")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=120) as client:
        yield client


def api(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=300)


async def post(http: httpx.AsyncClient, url: str, body: Any) -> httpx.Response:
    return await http.post(url, content=wire(body), headers={"Content-Type": "application/json"})


def assert_error(resp: httpx.Response, status: int, param: str | None, prefix: str = "") -> None:
    assert resp.status_code == status, (resp.status_code, resp.text[:300])
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error"
    assert err["param"] == param, err["message"]
    if param is not None:
        assert err["message"].startswith(prefix + param), err["message"]


async def test_a_valid_request_reaches_the_cold_servers_engine_check(
    cold_url: str, http: httpx.AsyncClient
) -> None:
    resp = await post(http, cold_url + "/v1/chat/completions", chat_body({}))
    assert resp.status_code == 503 and resp.json()["error"]["code"] == "engine_unavailable"
    resp = await post(http, cold_url + "/v1/recommendations", native_body({}))
    assert resp.status_code == 503


@pytest.mark.parametrize(
    ("route", "cases", "body"),
    [
        ("/v1/chat/completions", CHAT_CASES, chat_body),
        ("/v1/recommendations", NATIVE_CASES, native_body),
    ],
    ids=["chat", "native"],
)
async def test_catalogue_is_refused_before_the_route(
    cold_url: str, http: httpx.AsyncClient, route: str, cases: list, body
) -> None:
    for fields, param in cases:
        resp = await post(http, cold_url + route, body(fields))
        assert_error(resp, 400, param)


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b'{"model": "genrec", "messages": [{"role": "user", "content": "x"}], "seed": 1'
        + b"1" * 5000
        + b"}",  # more digits than Python's JSON reader takes
        b'{"model": "genrec", "messages": [{"role": "user", "content": "x"}], "metadata": '
        + b"[" * 100_000
        + b"]" * 100_000
        + b"}",  # deeper than Python's JSON reader recurses
        b'["model", "genrec"]',
        b'"genrec"',
    ],
    ids=["truncated", "5000-digit-int", "100000-deep", "array", "string"],
)
async def test_bodies_json_cannot_read_are_400s(
    cold_url: str, http: httpx.AsyncClient, content: bytes
) -> None:
    resp = await http.post(
        cold_url + "/v1/chat/completions",
        content=content,
        headers={"Content-Type": "application/json"},
    )
    assert_error(resp, 400, None)


async def test_a_body_over_the_limit_is_413(
    cold_url: str, http: httpx.AsyncClient, settings: Settings
) -> None:
    body = chat_body({"messages": [user("x" * (settings.max_body_bytes + 1))]})
    resp = await post(http, cold_url + "/v1/chat/completions", body)
    assert resp.status_code == 413 and resp.json()["error"]["code"] == "request_too_large"


async def test_official_client_gets_400s_naming_the_field(live_url: str) -> None:
    client = api(live_url)
    msgs = [user("a comedy")]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"seed": 2**64}, "seed"),
        ({"seed": INT64_MAX + 1, "stream": True}, "seed"),  # refused before the stream starts
        ({"temperature": 3}, "temperature"),
        ({"max_tokens": 1.0}, "max_tokens"),
        ({"top_p": 1.5}, "top_p"),
        ({"n": 0}, "n"),
        ({"messages": SIX_THOUSAND}, "messages"),
        ({"extra_body": {"stream": "yes"}}, "stream"),
        ({"extra_body": {"k": "5"}}, "k"),
        ({"extra_body": {"filters": ands(2000)}}, "filters"),
        ({"extra_body": {"filters": nested(MAX_DEPTH + 1)}}, "filters"),
        ({"extra_body": {"history": ["50"] * 201}}, "history"),
    ]
    for kwargs, param in cases:
        kwargs = {"model": "genrec", "messages": msgs, **kwargs}
        with pytest.raises(openai.BadRequestError) as info:
            await client.chat.completions.create(**kwargs)
        assert info.value.status_code == 400
        body = info.value.body
        assert isinstance(body, dict) and body["param"] == param, body
        assert body["message"].startswith(param)


async def test_the_extremes_of_each_bound_are_answered(live_url: str) -> None:
    """The largest values the schema takes work end to end: the bounds are not below what the
    engine and the store handle."""
    client = api(live_url)
    for seed in (INT64_MAX, INT64_MIN):
        resp = await client.chat.completions.create(
            model="genrec",
            messages=[user("a space adventure")],
            temperature=2,  # a JSON integer, and the highest temperature: seeded sampling
            top_p=1,
            seed=seed,
            n=1,
            max_tokens=32,
            extra_body={"mode": "describe", "k": 3},
        )
        assert len(resp.model_extra["recommendations"]) == 3
    resp = await client.chat.completions.create(
        model="genrec",
        messages=[user("x")] * (MAX_MESSAGES - 1) + [user("a comedy")],
        extra_body={"k": 3, "filters": {"$and": [nested(MAX_DEPTH - 1), ands(MAX_NODES - 20)]}},
    )
    assert len(resp.model_extra["recommendations"]) == 3


async def test_native_route_takes_the_largest_filter_and_names_a_store_refusal(
    live_url: str, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = live_url + "/v1/recommendations"
    resp = await post(http, url, native_body({"filters": ands(MAX_NODES - 1)}))
    assert resp.status_code == 200 and len(resp.json()["items"]) == 3
    # Lift the bound: the store's own refusal of the caller's filter is a 400 all the same.
    monkeypatch.setattr(genrec.filters, "MAX_NODES", 100_000)
    resp = await post(http, url, native_body({"filters": ands(2000)}))
    assert_error(resp, 400, "filters", prefix="bad ")
    assert "rejected" in resp.json()["error"]["message"]
