"""The engine adapters: every constraint kind to each engine's parameters, without a model."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from genrec.engines import adapters
from genrec.engines.base import Choice, Continuation, EngineRequest, Labels, Regex

PROMPT = "<|im_start|>user\nPick.<|im_end|>\n<|im_start|>assistant\n"


def test_labels_read_one_greedy_token_among_the_labels():
    req = EngineRequest.labels(PROMPT, [32, 33, 34])
    assert adapters.vllm_sampling(req, 20) == {
        "max_tokens": 1,
        "temperature": 0.0,
        "allowed_token_ids": [32, 33, 34],
        "logprobs": 3,
    }
    body = adapters.openai_completion(req, 20)
    assert body["allowed_token_ids"] == [32, 33, 34] and body["logprobs"] == 3
    assert body["return_tokens_as_token_ids"] is True
    assert body["prompt"] == PROMPT and body["add_special_tokens"] is False
    assert "structured_outputs" not in body


def test_more_labels_than_one_call_returns_is_refused():
    req = EngineRequest.labels(PROMPT, list(range(21)))
    for adapt in (adapters.vllm_sampling, adapters.openai_completion):
        with pytest.raises(ValueError, match="1..20 labels"):
            adapt(req, 20)


@pytest.mark.parametrize(
    ("constraint", "expected"),
    [
        (Choice(("Fargo", "Heat")), {"choice": ["Fargo", "Heat"]}),
        (Regex("(A|B)"), {"regex": "(A|B)"}),
    ],
)
def test_choice_and_regex_are_structured_outputs(constraint, expected):
    req = EngineRequest(PROMPT, max_tokens=8, seed=3, stop=("\n",), constraint=constraint)
    wanted = {**expected, "disable_any_whitespace": True}
    params = adapters.vllm_sampling(req, 20)
    assert params["structured_outputs"] == wanted
    assert (params["max_tokens"], params["seed"], params["stop"]) == (8, 3, ["\n"])
    body = adapters.openai_completion(req, 20)
    assert body["structured_outputs"] == wanted
    assert (body["max_tokens"], body["seed"], body["stop"]) == (8, 3, ["\n"])
    # vLLM 0.12 removed these and ignores them silently: never send them
    assert not any(key.startswith("guided_") for key in body)


def test_free_text_has_no_constraint_fields():
    req = EngineRequest(PROMPT, max_tokens=16, temperature=0.7)
    params = adapters.vllm_sampling(req, 20)
    assert params["structured_outputs"] is None and params["stop"] is None
    body = adapters.openai_completion(req, 20)
    assert "seed" not in body and "stop" not in body and "structured_outputs" not in body
    assert body["temperature"] == 0.7


def test_continuation_scores_the_text_after_the_prompt():
    req = EngineRequest.continuation(PROMPT, "Fargo (1996)")
    assert adapters.engine_prompt(req) == PROMPT + "Fargo (1996)"
    params = adapters.vllm_sampling(req, 20)
    assert params["prompt_logprobs"] == 0 and params["skip_reading_prefix_cache"] is False
    assert adapters.vllm_sampling(req, 20, skip_prefix_cache=True)["skip_reading_prefix_cache"]
    body = adapters.openai_completion(req, 20)
    assert body["prompt"] == PROMPT + "Fargo (1996)"
    assert body["prompt_logprobs"] == 0 and body["return_token_ids"] is True
    assert adapters.engine_prompt(EngineRequest(PROMPT)) == PROMPT


def test_labels_coming_back_are_revalidated():
    req = EngineRequest.labels(PROMPT, [32, 33])
    row = {
        32: SimpleNamespace(logprob=-0.1),
        33: SimpleNamespace(logprob=-math.inf),  # masked: not a real number
        99: SimpleNamespace(logprob=-0.01),  # not a label we allowed
    }
    assert adapters.vllm_labels(req, row) == {32: -0.1}
    choice = {
        "logprobs": {
            "top_logprobs": [
                {"token_id:32": -0.2, "token_id:33": None, "token_id:99": -0.05, "A": -1.0}
            ]
        }
    }
    assert adapters.openai_labels(req, choice) == {32: -0.2}
    assert adapters.openai_labels(req, {"logprobs": None}) == {}
    assert adapters.vllm_labels(EngineRequest(PROMPT), row) == {}


def test_token_names():
    assert adapters.token_id("token_id:123") == 123
    assert adapters.token_id("token_id:x") is None
    assert adapters.token_id("A") is None


def test_every_constraint_kind_is_adapted():
    kinds = {Labels((1,)), Choice(("a",)), Regex("a"), Continuation("a")}
    for c in kinds:
        req = EngineRequest(PROMPT, constraint=c)
        assert adapters.vllm_sampling(req, 20)["max_tokens"] == 1
        assert adapters.openai_completion(req, 20)["max_tokens"] == 1
