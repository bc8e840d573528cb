"""The server's parts that need no engine: request schema, error mapping, auth, limits, profiles,
the response template and the parsing of genrec's own answers. Real objects throughout."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from genrec.conversation import find_references, parse_answer
from genrec.data.item import Item
from genrec.errors import ConfigError, NotFound, RateLimited
from genrec.schema import Recommendation, RecommendedItem, Usage
from genrec.server.errors import from_validation, http_status, param_path
from genrec.server.guard import InFlightLimiter, bearer_ok
from genrec.server.openai_schema import ChatCompletionRequest, finish_reason
from genrec.server.profiles import get_profile, load_profiles
from genrec.server.responses import (
    RECOMMENDATIONS_SCHEMA,
    ResponseRenderer,
    check_json_schema,
    json_pieces,
)
from genrec.settings import Settings
from genrec.titles import title_key


def result_of(*items: tuple[str, str]) -> Recommendation:
    return Recommendation(
        items=[
            RecommendedItem(
                id=i, title=t, score=1.0 - r / 10, rank=r, grounded_by="label", confidence=0.9
            )
            for r, (i, t) in enumerate(items, 1)
        ],
        mode="rank",
        template="rank",
        model="m",
        candidates=[i for i, _ in items],
    )


def chat(**fields) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "genrec", "messages": [{"role": "user", "content": "x"}], **fields}
    )


# --- request schema and error mapping ------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"logprobs": True}, "logprobs"),
        ({"filter": {"year": 1995}}, "filter"),  # a typo of `filters` must not pass silently
        ({"k": 0}, "k"),
        ({"candidates": 500}, "candidates"),
        ({"mode": "guess"}, "mode"),
        ({"temperature": 3}, "temperature"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema"}}, "response_format"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "tool", "content": "x", "tool_call_id": "1"}]}, "messages[0].role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content[0]",
        ),
    ],
)
def test_invalid_fields_name_their_param(fields: dict, param: str) -> None:
    with pytest.raises(ValidationError) as info:
        chat(**fields)
    err = from_validation(info.value.errors())
    assert http_status(err) == 400
    assert err.param == param, err.message
    assert err.message.startswith(param)


def test_openai_fields_that_do_not_apply_are_accepted_and_options_read() -> None:
    body = chat(
        top_p=0.5,
        stop=["\n"],
        presence_penalty=0.1,
        metadata={"a": "b"},
        max_tokens=30,
        max_completion_tokens=20,
        stream_options={"include_usage": True},
        response_format={"type": "json_object"},
        messages=[
            {"role": "system", "content": "be brief"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            },
        ],
    )
    assert body.token_limit == 20  # max_completion_tokens wins, as in OpenAI's API
    assert body.include_usage and body.wants_json
    assert body.messages[1].text == "a\nb"


def test_param_paths_and_json_errors() -> None:
    assert param_path(["messages", 0, "content"]) == "messages[0].content"
    assert param_path([]) is None
    err = from_validation(
        [{"type": "json_invalid", "loc": ("body", 7), "msg": "x", "ctx": {"error": "bad"}}]
    )
    assert err.param is None and err.code == "invalid_json" and "character 7" in err.message


# --- auth and limits -----------------------------------------------------------------------------


def test_bearer_keys() -> None:
    assert bearer_ok("Bearer k3y", "k3y")
    assert bearer_ok("bearer k3y", "k3y")
    assert not bearer_ok("Bearer k3", "k3y")
    assert not bearer_ok("Basic k3y", "k3y")
    assert not bearer_ok(None, "k3y")
    assert not bearer_ok("Bearer ", "k3y")


def test_in_flight_limiter_refuses_past_its_limit_and_recovers() -> None:
    limiter = InFlightLimiter(2)
    limiter.acquire()
    with limiter.slot():
        with pytest.raises(RateLimited) as info:
            limiter.acquire()
        assert http_status(info.value) == 429 and info.value.retryable
    assert limiter.active == 1
    limiter.release()
    with limiter.slot():
        assert limiter.active == 1
    assert limiter.active == 0


@pytest.mark.parametrize(
    ("mode", "completion_tokens", "expected"),
    [
        ("describe", 64, "length"),  # describe generates under max_tokens: it was cut
        ("describe", 20, "stop"),
        ("generate", 64, "stop"),  # generate sizes its own list: complete, not truncated
        ("rank", 64, "stop"),
    ],
)
def test_finish_reason_is_length_only_where_max_tokens_capped_the_output(
    mode: str, completion_tokens: int, expected: str
) -> None:
    result = result_of(("1", "Toy Story")).model_copy(
        update={"mode": mode, "usage": Usage(completion_tokens=completion_tokens)}
    )
    assert finish_reason(result, 64) == expected
    assert finish_reason(result, None) == "stop"


async def test_unexpected_startup_failure_keeps_internals_out_of_health(tmp_path) -> None:
    from genrec.errors import EngineError
    from genrec.server.lifecycle import Service

    home = tmp_path / "a-file"  # chroma cannot make its folder here: an OSError, not ours
    home.write_text("x")
    service = Service(Settings(home=home))
    await service._start()
    assert service.stage == "failed"
    doc = service.health()
    assert doc["status"] == "failed" and "server log" in doc["error"]
    assert str(tmp_path) not in json.dumps(doc) and "NotADirectoryError" not in json.dumps(doc)
    with pytest.raises(EngineError) as info:
        service.require()
    assert str(tmp_path) not in info.value.message


# --- profiles ------------------------------------------------------------------------------------


def test_default_profiles_one_per_mode() -> None:
    profiles = load_profiles(Settings(k=7, candidates=15, mode="generate"))
    assert set(profiles) == {
        "genrec",
        "genrec-rank",
        "genrec-generate",
        "genrec-describe",
        "genrec-likelihood",
    }
    assert profiles["genrec"].mode == "generate" and profiles["genrec"].k == 7
    assert profiles["genrec-describe"].mode == "describe"
    assert profiles["genrec-rank"].candidates == 15


def test_profiles_from_settings_add_and_override() -> None:
    settings = Settings(
        profiles={
            "quick": {"mode": "rank", "k": 3, "candidates": 8, "description": "three fast"},
            "genrec-rank": {"k": 4},
            "comedies": {"filters": {"tags": {"$contains": "Comedy"}}},
        }
    )
    profiles = load_profiles(settings)
    assert profiles["quick"].k == 3 and profiles["quick"].candidates == 8
    assert profiles["genrec-rank"].k == 4 and profiles["genrec-rank"].mode == "rank"
    assert profiles["comedies"].mode == settings.mode and profiles["comedies"].filters
    with pytest.raises(NotFound) as info:
        get_profile(profiles, "gpt-4o")
    assert info.value.param == "model" and "quick" in info.value.message


def test_bad_profile_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'bad'.*mode"):
        load_profiles(Settings(profiles={"bad": {"mode": "telepathy"}}))
    with pytest.raises(ConfigError, match="'typo'"):
        load_profiles(Settings(profiles={"typo": {"kk": 3}}))
    # checked at start-up, not blamed on every request's client
    with pytest.raises(ConfigError, match="'ghost'.*template"):
        load_profiles(Settings(profiles={"ghost": {"template": "no-such-template"}}))
    with pytest.raises(ConfigError, match="'mismatch'.*template"):
        load_profiles(Settings(profiles={"mismatch": {"mode": "describe", "template": "rank"}}))
    with pytest.raises(ConfigError, match="'badwhere'.*filters"):
        load_profiles(Settings(profiles={"badwhere": {"filters": {"year": {"$foo": 1}}}}))


# --- the response template and reading it back ---------------------------------------------------


def test_rendered_answers_parse_back_to_the_same_items() -> None:
    result = result_of(("273", "Heat"), ("12", "Usual Suspects, The"), ("9", "[REC] 2 \n 3. Fake"))
    catalog = {
        "273": Item(id="273", title="Heat", tags=["Action", "Crime"], attributes={"year": 1995})
    }
    renderer = ResponseRenderer()
    pieces = renderer.pieces(result, catalog)
    assert len(pieces) == 4  # header + one per item (the footer is empty)
    text = "".join(pieces)
    assert "1. Heat (1995) — Action, Crime [id: 273]" in text
    listed = parse_answer(text)
    assert [x.id for x in listed] == ["273", "12", "9"]  # a newline in a title adds no item
    assert [x.rank for x in listed] == [1, 2, 3]
    assert listed[0].title == "Heat (1995)" and listed[1].title == "Usual Suspects, The"


def test_the_result_carries_what_its_answer_shows() -> None:
    # The chat answer's genres and year come with the result (no catalog read after the answer).
    heat = Item(id="273", title="Heat", tags=["Action", "Crime"], attributes={"year": 1995})
    result = result_of(("273", "Heat"), ("12", "Usual Suspects, The"))
    result = result.with_catalog([heat, Item(id="999", title="Not recommended")])
    assert result.catalog_items == {"273": heat}  # only its own items' records
    text = "".join(ResponseRenderer().pieces(result))
    assert "1. Heat (1995) — Action, Crime [id: 273]" in text
    assert "2. Usual Suspects, The [id: 12]" in text  # no record: the title alone
    assert "Action" not in result.model_dump_json()  # the records are not on the wire


def test_json_content_pieces_join_into_the_documented_shape() -> None:
    result = result_of(("1", "Toy Story"), ("2", "GoldenEye"))
    doc = json.loads("".join(json_pieces(result)))
    assert [it["id"] for it in doc["recommendations"]] == ["1", "2"]
    assert check_json_schema(RECOMMENDATIONS_SCHEMA) is None
    assert [x.id for x in parse_answer(json.dumps(doc))] == ["1", "2"]
    assert "rejects" in (check_json_schema({"type": "array"}) or "")
    assert "not a valid JSON schema" in (check_json_schema({"type": 5}) or "")


def test_empty_result_says_so() -> None:
    text = "".join(ResponseRenderer().pieces(result_of()))
    assert "could not find" in text and parse_answer(text) == []


def test_response_template_must_exist_and_be_named_response(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        ResponseRenderer("response-nope")
    with pytest.raises(ConfigError, match="response\\*"):
        ResponseRenderer("rank")
    (tmp_path / "response-x.j2").write_text("{% macro header(r, n) %}{% endmacro %}")
    with pytest.raises(ConfigError, match="lacks macros"):
        ResponseRenderer("response-x", tmp_path)


# --- ordinal references --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("more like the second one, but newer", [((1,), False)]),
        ("more like #3 please", [((2,), False)]),
        ("number 4 looks good", [((3,), False)]),
        ("the last one was great", [((4,), False)]),
        ("like the first two", [((0, 1), False)]),
        ("the 2nd movie, but not the first", [((1,), False), ((0,), True)]),
        ("not the third one", [((2,), True)]),
        ("the 9th one", []),  # past the end of a 5-item list
        ("I first saw it in 1995", []),
        ("something else entirely", []),
    ],
)
def test_ordinal_references(text: str, expected: list) -> None:
    refs = find_references(text, 5)
    assert [(r.positions, r.negated) for r in refs] == expected


def test_title_key_ignores_year_alt_titles_and_articles() -> None:
    assert title_key("Usual Suspects, The (1995)") == "the usual suspects"
    assert title_key("Shanghai Triad (Yao a yao yao dao waipo qiao) (1995)") == "shanghai triad"
    assert title_key("Heat") == "heat"
