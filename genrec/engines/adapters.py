"""Per engine, one pure function from an :class:`EngineRequest` to that engine's parameters, and
one that reads the label log-probabilities back: the engines themselves keep only transport.

- :func:`vllm_sampling` / :func:`vllm_labels`: the in-process engine (``SamplingParams`` keyword
  arguments; structured outputs as a plain dict the engine wraps in
  ``StructuredOutputsParams``);
- :func:`openai_completion` / :func:`openai_labels`: an OpenAI-compatible vLLM server's
  ``/v1/completions`` body (vLLM's extensions ``structured_outputs``, ``allowed_token_ids``,
  ``prompt_logprobs``; never the ``guided_*`` fields vLLM 0.12 removed and now ignores silently).

Both accept every constraint kind (``Labels``, ``Choice``, ``Regex``, ``Continuation``) and no
model is needed to test them. What comes back is re-validated: only allowed labels, only finite
log-probabilities, whatever a server returned.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from genrec.engines.base import (
    Choice,
    Continuation,
    EngineRequest,
    Labels,
    Regex,
    check_labels,
)


def engine_prompt(request: EngineRequest) -> str:
    """The text the engine receives: a Continuation scores its text read after the prompt."""
    c = request.constraint
    return request.prompt + c.text if isinstance(c, Continuation) else request.prompt


def structured_outputs(request: EngineRequest) -> dict[str, Any] | None:
    """vLLM's structured-outputs fields for a Choice or Regex constraint, else None."""
    c = request.constraint
    if isinstance(c, Choice):
        return {"choice": list(c.options), "disable_any_whitespace": True}
    if isinstance(c, Regex):
        return {"regex": c.pattern, "disable_any_whitespace": True}
    return None


def vllm_sampling(
    request: EngineRequest, max_logprobs: int, *, skip_prefix_cache: bool = False
) -> dict[str, Any]:
    """``SamplingParams(**kwargs)`` for the in-process engine.

    A Continuation asks for prompt log-probabilities only. vLLM skips the prefix cache for them
    by default (cached positions get none); only the text's positions matter here, so the cache
    is read unless ``skip_prefix_cache`` (the engine's retry when the cache covered the text).
    """
    c = request.constraint
    if isinstance(c, Continuation):
        return {
            "max_tokens": 1,
            "temperature": 0.0,
            "prompt_logprobs": 0,
            "skip_reading_prefix_cache": skip_prefix_cache,
            # Cached positions come back as uninitialised rows; detokenizing them fails.
            "detokenize": False,
        }
    if isinstance(c, Labels):
        ids = check_labels(request, max_logprobs)
        return {
            "max_tokens": 1,
            "temperature": 0.0,
            "allowed_token_ids": list(ids),
            "logprobs": len(ids),
        }
    return {
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "seed": request.seed,
        "stop": list(request.stop) or None,
        "structured_outputs": structured_outputs(request),
    }


def vllm_labels(request: EngineRequest, logprobs: Mapping[int, Any]) -> dict[int, float]:
    """The allowed labels' log-probabilities from vLLM's first-token ``{id: Logprob}`` row."""
    allowed = _allowed(request)
    return {
        tid: float(lp.logprob)
        for tid, lp in logprobs.items()
        if tid in allowed and math.isfinite(lp.logprob)
    }


def openai_completion(request: EngineRequest, max_logprobs: int) -> dict[str, Any]:
    """The ``/v1/completions`` body (without ``model``) for an OpenAI-compatible vLLM server."""
    c = request.constraint
    if isinstance(c, Continuation):
        return {
            "prompt": engine_prompt(request),
            "max_tokens": 1,
            "temperature": 0.0,
            "add_special_tokens": False,
            "prompt_logprobs": 0,
            "return_token_ids": True,
        }
    body: dict[str, Any] = {
        "prompt": request.prompt,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "add_special_tokens": False,
    }
    if isinstance(c, Labels):
        ids = check_labels(request, max_logprobs)
        body |= {
            "allowed_token_ids": list(ids),
            "logprobs": len(ids),
            "return_tokens_as_token_ids": True,
        }
    elif (structured := structured_outputs(request)) is not None:
        body["structured_outputs"] = structured
    if request.seed is not None:
        body["seed"] = request.seed
    if request.stop:
        body["stop"] = list(request.stop)
    return body


def openai_labels(request: EngineRequest, choice: Mapping[str, Any]) -> dict[int, float]:
    """The allowed labels' log-probabilities from a completion choice's first ``top_logprobs``
    (tokens named ``token_id:123``, as ``return_tokens_as_token_ids`` asks)."""
    allowed = _allowed(request)
    top = ((choice.get("logprobs") or {}).get("top_logprobs") or [None])[0] or {}
    out: dict[int, float] = {}
    for token, lp in top.items():
        tid = token_id(token)
        if tid in allowed and lp is not None and math.isfinite(lp):
            out[tid] = float(lp)
    return out


def token_id(token: str) -> int | None:
    """123 from vLLM's ``token_id:123`` token name; None for anything else."""
    if token.startswith("token_id:"):
        try:
            return int(token.removeprefix("token_id:"))
        except ValueError:
            return None
    return None


def _allowed(request: EngineRequest) -> frozenset[int]:
    c = request.constraint
    return frozenset(c.token_ids) if isinstance(c, Labels) else frozenset()
