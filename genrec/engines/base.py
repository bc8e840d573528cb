"""The one seam between genrec and an LM engine.

genrec renders every prompt itself, through the model's chat template, into ONE prompt string, so
all engines receive identical input: the in-process engine tokenizes it, the remote one sends it to
``/v1/completions``. An engine only has to do two things: generate text (optionally constrained to a
choice, a JSON schema or a regex) and return the next-token log-probabilities of a set of allowed
tokens (the single-pass ranking verbalizer). Failures raise :class:`genrec.errors.EngineError`
(retryable, HTTP 503), never hang: every call is bounded by ``settings.engine_timeout_s``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None


@dataclass(frozen=True)
class LabelLogprobs:
    logprobs: dict[
        int, float
    ]  # token id -> log-probability (processed: after allowed_token_ids masking)
    prompt_tokens: int


@runtime_checkable
class Engine(Protocol):
    model_name: str
    max_model_len: int
    max_logprobs: int  # how many log-probabilities one rank_labels call may return

    @property
    def healthy(self) -> bool: ...

    async def start(self) -> None: ...

    async def shutdown(self) -> None: ...

    async def generate(
        self,
        prompt: str,
        *,
        max_tokens: int,
        temperature: float = 0.0,
        seed: int | None = None,
        choice: list[str] | None = None,
        json_schema: dict | None = None,
        regex: str | None = None,
        stop: list[str] | None = None,
    ) -> Completion:
        """Sample text. At most one of choice/json_schema/regex constrains it (vLLM structured
        outputs); callers still re-validate the text, since a remote server may not enforce it."""
        ...

    async def rank_labels(self, prompt: str, *, allowed_token_ids: list[int]) -> LabelLogprobs: ...


def check_one_constraint(choice: object, json_schema: object, regex: object) -> None:
    """Structured outputs take at most one constraint; mixing them is a programming error."""
    if sum(c is not None for c in (choice, json_schema, regex)) > 1:
        raise ValueError("give at most one of choice, json_schema, regex")
