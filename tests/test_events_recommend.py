"""User state in requests, through the real Recommender (real Chroma, the real engine, the
session's SQLite event store under GENREC_HOME): stored history, an explicit history joining it,
bought or rated items never recommended again unless asked, events visible at once, cold start,
forgetting a user."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from genrec.errors import InvalidRequest
from genrec.events import Event
from genrec.recommender import Recommender
from genrec.schema import RecommendRequest

STAR_WARS = ["50", "172", "181"]  # Star Wars, Empire Strikes Back, Return of the Jedi


def new_user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


async def test_record_checks_each_event_against_the_catalog(recommender: Recommender) -> None:
    user = new_user()
    result = await recommender.record(
        [
            {"user_id": user, "item_id": "50", "type": "view", "event_id": "a"},
            {"user_id": user, "item_id": "no-such-item", "type": "view"},
            Event(user_id=user, item_id="172", type="rate", value=5, event_id="b"),
            {"user_id": user, "item_id": "181", "type": "view", "timestamp": "yesterday"},
        ]
    )
    assert (result.accepted, result.duplicates) == (2, 0)
    assert [(r.index, r.param) for r in result.rejected] == [
        (1, "events[1].item_id"),
        (3, "events[3].timestamp"),
    ]
    again = await recommender.record(
        [{"user_id": user, "item_id": "50", "type": "view", "event_id": "a"}]
    )
    assert (again.accepted, again.duplicates) == (0, 1)
    with pytest.raises(InvalidRequest) as info:
        await recommender.record([])
    assert info.value.param == "events"


async def test_a_user_id_request_uses_the_stored_history_and_sees_new_events_at_once(
    recommender: Recommender,
) -> None:
    user = new_user()
    await recommender.record(
        [
            {"user_id": user, "item_id": i, "type": "view", "timestamp": 1000 + n}
            for n, i in enumerate(STAR_WARS)
        ]
    )
    first = await recommender.recommend(RecommendRequest(user_id=user, k=5))
    assert first.user is not None and first.user.history == STAR_WARS
    assert not first.user.cold_start
    assert not {it.id for it in first.items} & set(STAR_WARS)
    # the same request with the history given explicitly retrieves the same candidates
    explicit = await recommender.recommend(RecommendRequest(history=STAR_WARS, k=5))
    assert first.candidates == explicit.candidates and explicit.user is None
    # an event recorded now is in the very next request
    await recommender.record([{"user_id": user, "item_id": "1", "type": "click"}])
    second = await recommender.recommend(RecommendRequest(user_id=user, k=5))
    assert second.user.history == [*STAR_WARS, "1"]
    assert "1" not in second.candidates and second.candidates != first.candidates


async def test_an_explicit_history_joins_the_stored_one(recommender: Recommender) -> None:
    user = new_user()
    await recommender.record(
        [
            {"user_id": user, "item_id": i, "type": "view", "timestamp": 1000 + n}
            for n, i in enumerate(["1", "50", "172"])
        ]
    )
    plan = recommender.plan(RecommendRequest(user_id=user, history=["50", "Fargo"], k=5))
    personal, summary = recommender.personalise(plan)
    # stored first, then the request's own (the more recent); "50" keeps its later place
    assert personal.request.history == ["1", "172", "50", "100"]
    assert summary.history == ["1", "50", "172"]
    # another user's request never reads this one's history
    other, _ = recommender.personalise(recommender.plan(RecommendRequest(user_id=new_user())))
    assert other.request.history == []


async def test_bought_or_rated_items_are_not_recommended_again_unless_asked(
    recommender: Recommender,
) -> None:
    window = recommender.settings.user_history
    recent = [str(i) for i in range(300, 300 + window)]
    # what this history would be recommended first, were nothing bought
    _, plain = recommender.retrieve(recommender.plan(RecommendRequest(history=recent, k=5)))
    bought = plain[0].id
    user = new_user()
    await recommender.record(
        [{"user_id": user, "item_id": bought, "type": "purchase", "timestamp": 10}]
        + [
            {"user_id": user, "item_id": i, "type": "view", "timestamp": 100 + n}
            for n, i in enumerate(recent)
        ]
    )
    # the purchase is older than the history window, yet never recommended
    result = await recommender.recommend(RecommendRequest(user_id=user, k=5))
    assert result.user.history == recent and result.user.excluded == 1
    assert bought not in result.candidates and bought not in {it.id for it in result.items}
    asked, summary = recommender.personalise(
        recommender.plan(RecommendRequest(user_id=user, k=5, include_consumed=True))
    )
    assert summary.excluded == 0
    _, candidates = recommender.retrieve(asked)
    assert candidates[0].id == bought


async def test_an_unknown_user_gets_a_cold_start_answer(recommender: Recommender) -> None:
    result = await recommender.recommend(RecommendRequest(user_id=new_user(), k=5))
    assert result.user.cold_start and result.user.history == []
    assert len(result.items) == 5
    # with nothing to go on, the candidates are the catalog's most popular items
    items = recommender.index.all_items()
    popular = sorted(items, key=lambda it: -(it.popularity or 0))[:20]
    assert set(result.candidates) == {it.id for it in popular}
    # with a query, content retrieval serves them, and it is not a cold start
    queried = await recommender.recommend(
        RecommendRequest(user_id=new_user(), query="a space adventure", k=5)
    )
    assert not queried.user.cold_start and set(queried.candidates) != set(result.candidates)
    with pytest.raises(ValidationError, match="user_id"):
        RecommendRequest(k=5)  # nothing at all is still a bad request


async def test_forgetting_a_user_forgets_their_history(recommender: Recommender) -> None:
    user = new_user()
    await recommender.record([{"user_id": user, "item_id": "50", "type": "purchase"}])
    assert await recommender.forget_user(user) == 1
    _, summary = recommender.personalise(recommender.plan(RecommendRequest(user_id=user, k=5)))
    assert summary.history == [] and summary.cold_start
