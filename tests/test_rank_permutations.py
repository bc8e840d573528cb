"""rank's permutation pass (GENREC_RANK_PERMUTATIONS=2): the candidates also in reversed order,
each candidate's log-probability averaged over both orders. Real engine, default model."""

from __future__ import annotations

import math

import pytest

from genrec.modes.rank import rank_labels
from genrec.schema import RecommendRequest
from tests.fixtures_engine import sharing

STAR_WARS = ["50", "172", "181"]


async def test_the_permutation_pass_averages_both_orders(recommender):
    both = sharing(recommender, rank_permutations=2)
    request = RecommendRequest(history=STAR_WARS, k=20, mode="rank")
    once = await recommender.recommend(request)
    twice = await both.recommend(request)
    assert twice.candidates == once.candidates
    assert sorted(i.id for i in twice.items) == sorted(twice.candidates)
    # two prompts of the same length: about twice the prompt tokens
    assert twice.usage.prompt_tokens == pytest.approx(2 * once.usage.prompt_tokens, rel=0.02)
    assert sum(i.score for i in twice.items) == pytest.approx(1.0, abs=1e-3)

    # By hand: the reversed prompt ranked on its own, then the two log-probabilities averaged.
    plan = both.plan(request)
    history, candidates = both.retrieve(plan)
    flipped = both.render(plan, history, candidates[::-1])
    ids = both.tokenizer.label_token_ids(flipped.labels, flipped.prompt)
    second = dict((await rank_labels(both.engine, flipped.prompt, ids)).ranked)
    first = {i.id: i.score for i in once.items}
    n = len(candidates)
    logp = {
        c.id: (math.log(first[c.id]) + math.log(second[n - 1 - pos])) / 2
        for pos, c in enumerate(candidates)
    }
    log_z = math.log(sum(math.exp(v) for v in logp.values()))
    for item in twice.items:
        assert math.log(item.score) == pytest.approx(logp[item.id] - log_z, abs=0.3)
