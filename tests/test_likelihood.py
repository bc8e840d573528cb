"""likelihood mode against the real engine and default model: each candidate's description is
scored by the LM after the user's need, calibrated, and the candidates come back in that order."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from genrec.engines.base import PREFIX_BLOCK, EngineRequest
from genrec.errors import InvalidRequest
from genrec.modes.likelihood import aligned_prompt, mean_logprob, score_texts, scored_texts
from genrec.recommender import Recommender
from genrec.schema import RecommendRequest
from genrec.server.errors import http_status
from tests.fixtures_engine import sharing

STAR_WARS = ["50", "172", "181"]


async def test_likelihood_orders_the_candidates_by_their_calibrated_score(
    recommender, ml100k_index
):
    result = await recommender.recommend(
        RecommendRequest(history=STAR_WARS, k=20, mode="likelihood")
    )
    assert result.mode == "likelihood" and result.template == "likelihood_need"
    ids = [i.id for i in result.items]
    assert sorted(ids) == sorted(result.candidates), "every candidate is scored and returned"
    assert all(i.grounded_by == "score" and i.from_candidates for i in result.items)
    scores = [i.score for i in result.items]
    assert scores == sorted(scores, reverse=True)
    assert len(set(scores)) > 10, "scores tell candidates apart"
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens == 0
    assert not set(ids) & set(STAR_WARS)


@pytest.mark.parametrize("align", [False, True])
async def test_a_score_is_the_pmi_of_the_items_text(recommender, align):
    """Recompute one candidate's score by hand: mean log p(text | need) minus mean log p(text |
    the same prompt with no need), each read from a single engine call (both prompts padded
    for the prefix cache when the setting says so)."""
    request = RecommendRequest(history=STAR_WARS, k=3, mode="likelihood")
    result = await sharing(recommender, likelihood_align=align).recommend(request)
    plan = recommender.plan(request)
    history, candidates = recommender.retrieve(plan)
    rendered = recommender.render(plan, history, candidates)
    null = recommender.render(plan, [], candidates)  # the same template, no need stated
    assert null.prompt != rendered.prompt
    top = result.items[0]
    pos = [c.id for c in candidates].index(top.id)
    text = scored_texts(rendered)[pos]
    engine, tok = recommender.engine, recommender.tokenizer
    prompt, _ = aligned_prompt(rendered.prompt, rendered.prompt_tokens, tok, align)
    null_prompt, _ = aligned_prompt(null.prompt, null.prompt_tokens, tok, align)
    cond = await engine.complete(EngineRequest.continuation(prompt, text))
    prior = await engine.complete(EngineRequest.continuation(null_prompt, text))
    assert len(cond.token_logprobs) == recommender.tokenizer.count(text)
    assert all(lp <= 0 and math.isfinite(lp) for lp in cond.token_logprobs)
    assert top.score == pytest.approx(mean_logprob(cond) - mean_logprob(prior), abs=0.02)


async def test_the_aligned_prompt_leaves_one_prompt_token_per_candidate_to_compute(recommender):
    """Left-padded with document separators to 1 token past a whole number of cache blocks,
    the need prompt is read from the prefix cache by every candidate after the first, except its
    last token (whose logits give the text's first log-probability)."""
    request = RecommendRequest(history=STAR_WARS, k=3, mode="likelihood")
    plan = recommender.plan(request)
    history, candidates = recommender.retrieve(plan)
    rendered = recommender.render(plan, history, candidates)
    tok = recommender.tokenizer
    prompt, pad = aligned_prompt(rendered.prompt, rendered.prompt_tokens, tok, True)
    n = tok.count(prompt)
    assert n % PREFIX_BLOCK == 1 and n == rendered.prompt_tokens + pad and 0 <= pad < PREFIX_BLOCK
    assert prompt == tok.separator * pad + rendered.prompt and tok.separator == "<|endoftext|>"
    texts = scored_texts(rendered)[:6]
    results = await score_texts(recommender.engine, prompt, texts)
    for text, result in zip(texts[1:], results[1:], strict=True):
        assert result.cached_tokens == n - 1
        assert result.prompt_tokens - result.cached_tokens == 1 + tok.count(text)
    assert aligned_prompt(rendered.prompt, rendered.prompt_tokens, tok, align=False) == (
        rendered.prompt,
        0,
    )


async def test_prefix_cache_does_not_change_a_score(recommender):
    """The first call computes the whole prompt; the second reads it (and the text's own blocks)
    from the prefix cache, which must not leave uncomputed positions in the score."""
    tok = recommender.tokenizer
    prompt = tok.chat_prompt([{"role": "user", "content": "Name a space opera. " * 20}])
    text = "Star Wars: Episode IV - A New Hope, a space opera from 1977. " * 3
    engine = recommender.engine
    first = await engine.complete(EngineRequest.continuation(prompt, text))
    again = await engine.complete(EngineRequest.continuation(prompt, text))
    assert len(first.token_logprobs) == tok.count(text) > 32  # spans whole cache blocks
    for a, b in zip(first.token_logprobs, again.token_logprobs, strict=True):
        assert b == pytest.approx(a, abs=0.05)


async def test_score_variants(recommender):
    """mean and sum are the uncalibrated scores; the order they give differs from PMI's."""
    orders = {}
    for how in ("pmi", "mean", "sum"):
        rec = sharing(recommender, likelihood_score=how)
        result = await rec.recommend(RecommendRequest(history=STAR_WARS, k=20, mode="likelihood"))
        orders[how] = [i.id for i in result.items]
        if how == "sum":
            assert all(i.score < 0 for i in result.items)  # a sum of log-probabilities
    assert orders["pmi"] != orders["mean"] or orders["pmi"] != orders["sum"]


def _user_template(folder: Path, name: str, body: str) -> None:
    front = f"{{#---\nname: {name}\ndescription: test\nmodes: [likelihood]\nversion: 1\n---#}}\n"
    (folder / f"{name}.j2").write_text(front + body, encoding="utf-8")


@pytest.mark.parametrize(
    ("name", "body", "words"),
    [
        (
            "lk_no_need",
            "{% block user %}Recommend one.{% endblock %}"
            "{% block item %}{{ c.title }}{% endblock %}",
            "states no need",
        ),
        (
            "lk_no_item",
            "{% block user %}{% for h in history %}{{ h.title }}{% endfor %}{% endblock %}",
            "block item",
        ),
    ],
)
async def test_a_template_that_cannot_serve_likelihood_is_a_400(
    recommender, tmp_path, name, body, words
):
    _user_template(tmp_path, name, body)
    settings = recommender.settings.model_copy(update={"prompts_dir": tmp_path})
    rec = Recommender(settings, index=recommender.index, tokenizer=recommender.tokenizer)
    with pytest.raises(InvalidRequest) as err:
        rec.plan(RecommendRequest(history=STAR_WARS, mode="likelihood", template=name))
    assert err.value.param == "template" and words in err.value.message
    assert http_status(err.value) == 400


async def test_an_empty_item_text_is_a_400_before_engine_work(recommender, tmp_path):
    _user_template(
        tmp_path,
        "lk_blank_item",
        "{% block user %}{% for h in history %}{{ h.title }}{% endfor %}{% endblock %}"
        "{% block item %} {% endblock %}",
    )
    rec = sharing(recommender, prompts_dir=tmp_path)
    request = RecommendRequest(history=STAR_WARS, mode="likelihood", template="lk_blank_item")
    with pytest.raises(InvalidRequest) as err:
        await rec.recommend(request)
    assert err.value.param == "candidates" and "empty description" in err.value.message


async def test_likelihood_fuses_with_the_retriever(recommender):
    """Weight 1 returns the retriever's order; every item shows both parts of its score."""
    rec = sharing(recommender, fusion_weight=1.0)
    request = RecommendRequest(history=STAR_WARS, k=20, mode="likelihood")
    fused = await rec.recommend(request)
    alone = await recommender.recommend(request)
    assert fused.fusion_weight == 1.0 and alone.fusion_weight == 0.0
    assert [i.id for i in fused.items] == fused.candidates  # the retriever's order
    assert [i.id for i in alone.items] != alone.candidates  # the LM's own order differs
    lm = {i.id: i.lm_logprob for i in alone.items}
    for item in fused.items:
        assert item.retrieval_score is not None and item.lm_logprob is not None
        assert item.lm_logprob == pytest.approx(lm[item.id], abs=0.05)  # the same LM part


QUERY = "space opera, lightsabers, Darth Vader"


async def test_query_likelihood_scores_the_query_after_each_candidate(recommender):
    """likelihood_query: the same query tokens scored after each candidate's own prompt; every
    score recomputed by hand from one engine call is that item's score."""
    request = RecommendRequest(
        query=QUERY, history=STAR_WARS, k=20, mode="likelihood", template="likelihood_query"
    )
    result = await recommender.recommend(request)
    assert result.template == "likelihood_query"
    ids = [i.id for i in result.items]
    assert sorted(ids) == sorted(result.candidates)
    scores = [i.score for i in result.items]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) > 10
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens == 0
    plan = recommender.plan(request)
    history, candidates = recommender.retrieve(plan)
    rendered = recommender.render(plan, history, candidates)
    tok, text = recommender.tokenizer, " " + QUERY
    position = [c.id for c in candidates]
    for item in result.items:
        turn = rendered.items[position.index(item.id)]
        assert item.title in turn  # the candidate's own prompt names it
        prompt = tok.chat_prompt([{"role": "user", "content": turn}]) + "Tags:"
        scored = await recommender.engine.complete(EngineRequest.continuation(prompt, text))
        assert len(scored.token_logprobs) == tok.count(text)
        assert item.score == pytest.approx(mean_logprob(scored), abs=0.02)


async def test_query_likelihood_without_a_query_is_a_400(recommender):
    request = RecommendRequest(history=STAR_WARS, mode="likelihood", template="likelihood_query")
    with pytest.raises(InvalidRequest) as err:
        recommender.plan(request)
    assert err.value.param == "query" and "states none" in err.value.message
    assert http_status(err.value) == 400


async def test_query_likelihood_with_an_empty_candidate_prompt_is_a_400(recommender, tmp_path):
    front = "{#---\nname: lq_blank\ndescription: test\nmodes: [likelihood]\nversion: 1\n"
    (tmp_path / "lq_blank.j2").write_text(
        front
        + "scores: query\n---#}\n{% block user %}x{% endblock %}{% block item %} {% endblock %}"
    )
    rec = sharing(recommender, prompts_dir=tmp_path)
    request = RecommendRequest(query=QUERY, mode="likelihood", template="lq_blank")
    with pytest.raises(InvalidRequest) as err:
        await rec.recommend(request)
    assert err.value.param == "candidates" and "empty prompt" in err.value.message
