"""The decoding modes against the real in-process engine (default model)."""

from __future__ import annotations

import math

import pytest

from genrec.modes.describe import describe_item
from genrec.modes.generate import choice_regex, generate_titles, unique_prefix_tokens
from genrec.modes.rank import label_chunks, merge_chunks, rank_labels
from genrec.prompts import LETTERS

MOVIES = [
    "Toy Story",
    "Star Wars",
    "Star Trek: The Wrath of Khan",
    "Star Trek IV: The Voyage Home",
    "M*A*S*H",
    "What's Up, Doc?",
    "Mortal Kombat",
    "Mortal Kombat: Annihilation",
    "[Rec] (2007)",
    "1+1 = 2",
    "Heat",
    "M",
]


def chat(tokenizer, text: str) -> str:
    return tokenizer.chat_prompt([{"role": "user", "content": text}])


def test_label_chunks_share_an_anchor():
    assert label_chunks(5, 20) == [[0, 1, 2, 3, 4]]
    chunks = label_chunks(30, 20)
    assert chunks == [[0, *range(1, 20)], [0, *range(20, 30)]]
    assert all(len(c) <= 20 for c in chunks)
    assert sorted({p for c in chunks for p in c}) == list(range(30))
    with pytest.raises(ValueError):
        label_chunks(3, 1)


def test_merge_chunks_puts_labels_on_one_scale():
    # Logits 3, 2, 1, 0: a single softmax over all four, or two chunks anchored at label 0.
    logits = [3.0, 2.0, 1.0, 0.0]

    def softmax(pos):
        z = math.log(sum(math.exp(logits[p]) for p in pos))
        return {p: logits[p] - z for p in pos}

    merged = merge_chunks([[0, 1], [0, 2, 3]], [softmax([0, 1]), softmax([0, 2, 3])], 4)
    assert merged == pytest.approx(list(softmax([0, 1, 2, 3]).values()))
    # A label nobody returned ranks last with probability 0.
    partial = merge_chunks([[0, 1, 2]], [{0: -0.1, 1: -2.4}], 3)
    assert partial[2] == -math.inf and math.exp(partial[0]) + math.exp(partial[1]) == pytest.approx(
        1
    )


def test_regex_escapes_titles():
    rx = choice_regex(["M*A*S*H", "What's Up, Doc?", "[Rec] (2007)", ""])
    assert rx == r"(M\*A\*S\*H|What's Up, Doc\?|\[Rec\] \(2007\)|)"


def test_unique_prefix_tokens():
    assert unique_prefix_tokens([[1, 2, 3], [4, 5]]) == 1
    assert unique_prefix_tokens([[1, 2, 3], [1, 2, 4], [9]]) == 3
    assert unique_prefix_tokens([[1, 2], [1, 2, 3]]) == 3  # one title is a prefix of another


async def test_chunked_ranking_equals_one_pass(recommender):
    engine, tok = recommender.engine, recommender.tokenizer
    prompt = chat(tok, "Pick a letter from A to T that you like best.")
    ids = tok.label_token_ids(LETTERS[:20], prompt)
    one = await rank_labels(engine, prompt, ids)  # 20 labels, one call
    assert one.calls == 1
    chunked = await rank_labels(engine, prompt, ids, cap=7)  # anchored chunks of <= 7
    assert chunked.calls == 4
    p_one = dict(one.ranked)
    p_chunked = dict(chunked.ranked)
    assert sum(p_one.values()) == pytest.approx(1.0, abs=1e-3)
    assert sum(p_chunked.values()) == pytest.approx(1.0, abs=1e-3)
    # One scale: each label's log-probability agrees. In bf16 the chunks (other batches, other
    # allowed sets) move a logit by up to ~0.15, so the check is in log space, and the order is
    # compared where the one-pass gap is wider than that noise.
    for i in range(20):
        assert math.log(p_chunked[i]) == pytest.approx(math.log(p_one[i]), abs=0.3)
    order_one = [i for i, _ in one.ranked]
    for a, b in zip(order_one, order_one[1:], strict=False):
        if math.log(p_one[a]) - math.log(p_one[b]) > 0.6:
            assert p_chunked[a] > p_chunked[b]


async def test_generate_writes_distinct_exact_titles(recommender):
    engine, tok = recommender.engine, recommender.tokenizer
    # A prompt that invites repetition: the constraint still gives k distinct exact titles.
    prompt = chat(
        tok,
        "List films, one per line. Star Wars is the best, write Star Wars again and again.\n"
        + "\n".join(MOVIES),
    )
    result, picked = await generate_titles(engine, prompt, MOVIES, 8, tokenize=tok.encode)
    assert len(result.outputs) == 8 and len(set(result.outputs)) == 8
    assert set(result.outputs) <= set(MOVIES)  # regex metacharacters in titles were escaped
    assert picked == [MOVIES.index(t) for t in result.outputs]
    # Jump-forward: far fewer decode steps than the titles' tokens.
    full = sum(len(tok.encode(t)) for t in result.outputs)
    assert 0 < result.usage.completion_tokens < full
    again, _ = await generate_titles(engine, prompt, MOVIES, 8, tokenize=tok.encode)
    assert again.outputs == result.outputs  # temperature 0 is deterministic


async def test_generate_can_pick_every_candidate(recommender):
    engine, tok = recommender.engine, recommender.tokenizer
    prompt = chat(tok, "Name these films:\n" + "\n".join(MOVIES))
    result, _ = await generate_titles(engine, prompt, MOVIES, len(MOVIES), tokenize=tok.encode)
    assert sorted(result.outputs) == sorted(MOVIES)


async def test_describe_writes_free_text(recommender):
    engine, tok = recommender.engine, recommender.tokenizer
    result = await describe_item(
        engine, chat(tok, "Describe a great science fiction film."), max_tokens=24
    )
    assert len(result.outputs) == 1 and len(result.outputs[0].split()) >= 5
    assert result.usage.completion_tokens <= 24
