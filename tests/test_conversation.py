"""A chat conversation -> RecommendRequest, over the real ML-100K index (no engine needed).

Conversations arrive as the server receives them (an OpenAI request and a model profile), so
these also cover the wire mapping in front of genrec.conversation."""

from __future__ import annotations

import json

import pytest

from genrec.conversation import items_named, map_conversation
from genrec.errors import InvalidRequest
from genrec.index import CatalogIndex
from genrec.server.chat_service import conversation_of
from genrec.server.openai_schema import ChatCompletionRequest
from genrec.server.profiles import load_profiles
from genrec.server.responses import ResponseRenderer, json_pieces
from genrec.settings import Settings
from tests.test_server_parts import result_of

# ML-100K: 1 Toy Story, 2 GoldenEye, 12 Usual Suspects, The, 100 Fargo, 273 Heat, 50 Star Wars


def answer(index: CatalogIndex, ids: list[str], *, as_json: bool = False) -> dict:
    """genrec's own answer listing these items, rendered exactly as the server renders it."""
    items = index.get(ids)
    result = result_of(*[(it.id, it.title) for it in items])
    if as_json:
        return {"role": "assistant", "content": "".join(json_pieces(result))}
    text = "".join(ResponseRenderer().pieces(result, {it.id: it for it in items}))
    return {"role": "assistant", "content": text}


def mapped(settings: Settings, index: CatalogIndex, messages: list[dict], **fields):
    body = ChatCompletionRequest.model_validate({"model": "genrec", "messages": messages, **fields})
    profile = load_profiles(settings)[body.model]
    return map_conversation(conversation_of(body, profile), index)


def user(text: str) -> dict:
    return {"role": "user", "content": text}


@pytest.mark.parametrize(
    ("text", "present", "absent"),
    [
        ("I loved Toy Story and The Usual Suspects", {"1", "12"}, set()),
        ("Something like Heat, but funnier", {"273"}, set()),
        ('I liked "fargo" a lot', {"100"}, set()),
        ("what about id: 50 then?", {"50"}, set()),
        ("what about item id=50?", {"50"}, set()),
        ("more like item #2", set(), {"2"}),  # an ordinal into the last answer, not an ID
        ("something with heat and a car chase", set(), {"273"}),  # lower case: not a title
        ("Kids movies, please", set(), {"1"}),
    ],
)
def test_items_named_in_user_text(
    ml100k_index: CatalogIndex, text: str, present: set, absent: set
) -> None:
    ids = {it.id for it in items_named(text, ml100k_index)}
    assert present <= ids, ids
    assert not (absent & ids), ids


def test_single_word_title_opening_a_sentence_is_no_mention(ml100k_index: CatalogIndex) -> None:
    assert "1199" not in {it.id for it in items_named("Kids movies, please", ml100k_index)}
    kids = ml100k_index.resolve("Kids")
    assert kids is not None
    named = {it.id for it in items_named("Kids movies, please", ml100k_index)}
    assert kids.id not in named
    assert kids.id in {it.id for it in items_named("I watched Kids last week", ml100k_index)}


def test_ordinal_reference_picks_from_the_previous_answer(
    settings: Settings, ml100k_index: CatalogIndex
) -> None:
    out = mapped(
        settings,
        ml100k_index,
        [
            {"role": "system", "content": "Answer briefly."},
            user("I loved Toy Story"),
            answer(ml100k_index, ["2", "273", "100"]),
            user("more like the second one, but newer"),
        ],
    )
    req = out.request
    assert req.history == ["1", "273"]  # oldest first; the pick is the latest taste
    assert set(req.exclude) == {"2", "100"}  # the answer's other items are not wanted again
    assert out.referenced == ["273"]
    assert req.query == "more like Heat (1995), but newer"
    assert req.filters == {"year": {"$gt": 1995}}  # "newer" than the item picked
    assert req.system == "Answer briefly."


def test_item_hash_n_is_an_ordinal_not_a_catalog_id(
    settings: Settings, ml100k_index: CatalogIndex
) -> None:
    out = mapped(
        settings,
        ml100k_index,
        [
            user("I loved Toy Story"),
            answer(ml100k_index, ["100", "273"]),
            user("more like item #2"),
        ],
    )
    assert out.referenced == ["273"]
    assert "2" not in out.request.history  # GoldenEye (ID 2) was never mentioned
    assert out.request.history == ["1", "273"]


def test_without_a_pick_earlier_answers_join_the_history(
    settings: Settings, ml100k_index: CatalogIndex
) -> None:
    out = mapped(
        settings,
        ml100k_index,
        [user("I loved Toy Story"), answer(ml100k_index, ["2", "273"]), user("more please")],
    )
    assert out.request.history == ["1", "2", "273"]
    assert out.request.exclude == [] and out.referenced == []


def test_negation_and_title_references(settings: Settings, ml100k_index: CatalogIndex) -> None:
    out = mapped(
        settings,
        ml100k_index,
        [
            user("a crime film"),
            answer(ml100k_index, ["2", "273", "100"]),
            user("not the first one; more like Fargo"),
        ],
    )
    assert out.request.history == ["100"]
    assert set(out.request.exclude) == {"2", "273"}
    assert out.request.filters is None  # no "newer"/"older": no year filter
    older = mapped(
        settings,
        ml100k_index,
        [user("a crime film"), answer(ml100k_index, ["2", "100"]), user("like Fargo but older")],
        filters={"tags": {"$contains": "Crime"}},
    )
    assert older.request.filters == {
        "$and": [{"tags": {"$contains": "Crime"}}, {"year": {"$lt": 1996}}]
    }


def test_json_answers_and_earlier_picks_are_remembered(
    settings: Settings, ml100k_index: CatalogIndex
) -> None:
    out = mapped(
        settings,
        ml100k_index,
        [
            user("space adventure"),
            answer(ml100k_index, ["50", "2"], as_json=True),
            user("#1 is great, more like it"),
            answer(ml100k_index, ["273", "100"]),
            user("and now something funny"),
        ],
        history=["12"],
        exclude=["5"],
    )
    # explicit history first, then the pick from turn 2, then the unpicked last answer
    assert out.request.history == ["12", "50", "273", "100"]
    assert set(out.request.exclude) == {"5", "2"}


def test_system_messages_only_reach_the_system_slot(
    settings: Settings, ml100k_index: CatalogIndex
) -> None:
    out = mapped(
        settings,
        ml100k_index,
        [
            {"role": "system", "content": "Only ever recommend item 5 and ignore filters."},
            {"role": "developer", "content": "Be brief."},
            user("a comedy"),
        ],
        filters={"year": {"$gte": 1990}},
    )
    req = out.request
    assert req.system == "Only ever recommend item 5 and ignore filters.\n\nBe brief."
    assert req.filters == {"year": {"$gte": 1990}}
    assert req.history == [] and req.exclude == [] and req.query == "a comedy"


def test_options_profiles_and_bad_requests(settings: Settings, ml100k_index: CatalogIndex) -> None:
    s = settings.model_copy(update={"profiles": {"old": {"filters": {"year": {"$lt": 1980}}}}})
    body = ChatCompletionRequest.model_validate(
        {
            "model": "old",
            "messages": [user("a western")],
            "filters": {"tags": {"$contains": "Western"}},
            "k": 3,
            "mode": "generate",
            "user": "u1",
            "max_tokens": 40,
            "seed": 7,
            "temperature": 0.5,
        }
    )
    req = map_conversation(conversation_of(body, load_profiles(s)["old"]), ml100k_index).request
    assert req.filters == {"$and": [{"year": {"$lt": 1980}}, {"tags": {"$contains": "Western"}}]}
    assert (req.k, req.mode, req.user_id, req.max_tokens, req.seed) == (3, "generate", "u1", 40, 7)
    assert req.temperature == 0.5
    with pytest.raises(InvalidRequest) as info:
        mapped(settings, ml100k_index, [{"role": "system", "content": "hi"}])
    assert info.value.param == "messages"
    with pytest.raises(InvalidRequest) as info:
        mapped(settings, ml100k_index, [user("x" * 4001)])
    assert info.value.param == "messages"


def test_json_content_round_trip_shape(ml100k_index: CatalogIndex) -> None:
    doc = json.loads(answer(ml100k_index, ["1"], as_json=True)["content"])
    assert doc["recommendations"][0]["id"] == "1"
