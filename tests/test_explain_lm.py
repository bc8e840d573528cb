"""Evidence through the whole Recommender with the real engine and default model: every item
says why, the LM's move is evidence, the optional sentence names only the item's evidence, and
the chat answer and JSON carry the reasons."""

from __future__ import annotations

from pathlib import Path

from genrec.conversation.answers import parse_answer
from genrec.explain.sentence import names_outside, options
from genrec.schema import RecommendRequest
from genrec.server.openai_schema import recommendations_list
from genrec.server.responses import ResponseRenderer

STAR_WARS = ["50", "172", "181"]
PROMPTS = Path(__file__).resolve().parents[1] / "prompts"


async def test_every_item_says_why_and_the_lm_move_is_evidence(recommender):
    result = await recommender.recommend(RecommendRequest(history=STAR_WARS, k=10, mode="rank"))
    assert len(result.items) == 10
    for it in result.items:
        assert it.because and it.reason and it.explanation is None
        assert it.because[0].kind != "fallback"
        history = [e for e in it.because if e.kind == "history"]
        assert history and {e.item_id for e in history} <= set(STAR_WARS)
        before = result.candidates.index(it.id) + 1
        lm = [e for e in it.because if e.kind == "lm"]
        assert bool(lm) == (before != it.rank)
        if lm:
            assert (lm[0].rank_before, lm[0].rank_after) == (before, it.rank)
            assert lm[0].lm_logprob == it.lm_logprob
    dumped = recommendations_list(result)
    assert all(d["because"] and d["reason"] for d in dumped)
    # the chat answer: one reason line per item, and the list still reads back
    text = "".join(ResponseRenderer("response", PROMPTS).pieces(result))
    assert text.count("\n   — because you watched") == 10
    assert [x.id for x in parse_answer(text)] == [it.id for it in result.items]


async def test_the_lm_sentence_names_only_the_items_evidence(recommender):
    plain = await recommender.recommend(RecommendRequest(history=STAR_WARS, k=3))
    result = await recommender.recommend(RecommendRequest(history=STAR_WARS, k=3, explain=True))
    assert [it.id for it in result.items] == [it.id for it in plain.items]
    others = [it.title for it in recommender.index.get([*STAR_WARS, *result.candidates])]
    for it in result.items:
        allowed, _ = options(it, "en")
        assert it.explanation in allowed
        assert names_outside(it.explanation, it, others) == []
        assert it.title in it.explanation
    assert result.usage.prompt_tokens > plain.usage.prompt_tokens
    text = "".join(ResponseRenderer("response", PROMPTS).pieces(result))
    assert all(f"   — {it.explanation}\n" in text for it in result.items)
