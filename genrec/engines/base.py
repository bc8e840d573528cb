"""The one seam between genrec and an LM engine.

genrec renders every prompt itself, through the model's chat template, into ONE prompt string, so
all engines receive identical input: the in-process engine tokenizes it, the remote one sends it to
``/v1/completions``. An engine does one thing: run an :class:`EngineRequest` (a prompt, sampling,
and an optional output constraint) and return an :class:`EngineResult`. The constraint is a typed
value:

- :class:`Labels`: one next token among these token ids; their log-probabilities come back (the
  single-pass ranking verbalizer; vLLM's ``processed_logprobs`` reports them after masking);
- :class:`Choice`: the text is one of these strings (vLLM structured outputs);
- :class:`Regex`: the text matches this pattern (vLLM structured outputs);
- :class:`Continuation`: no text is written; the log-probability of each token of this text,
  read as if it followed the prompt, comes back (vLLM prompt log-probabilities: the likelihood
  mode's score of an item's description).

Callers still re-validate what comes back: a remote server may not enforce a constraint.
Failures raise :class:`genrec.errors.EngineError` (retryable, HTTP 503), never hang: every call is
bounded by ``settings.engine_timeout_s``.

Ownership: an engine is an async context manager, and whoever starts an engine stops it.
``async with engine:`` starts it unless it is already running, and on exit stops it only if that
``async with`` started it. The Recommender, the evaluation runner and the engine cache all follow
this one rule.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

# The KV-cache block (tokens) of the in-process engine: prefix caching reuses whole blocks. A
# remote vLLM on a GPU uses 16, which divides it.
PREFIX_BLOCK = 32


@dataclass(frozen=True)
class Labels:
    token_ids: tuple[int, ...]


@dataclass(frozen=True)
class Choice:
    options: tuple[str, ...]


@dataclass(frozen=True)
class Regex:
    pattern: str


@dataclass(frozen=True)
class Continuation:
    """Score ``text`` after the prompt. The prompt and the text are tokenized together, as one
    string, and the tokens past the prompt's own token count are the text's: so the prompt should
    end at a token boundary (a newline, as a chat generation prompt does)."""

    text: str


Constraint = Labels | Choice | Regex | Continuation


@dataclass(frozen=True)
class EngineRequest:
    prompt: str
    max_tokens: int = 1
    temperature: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    constraint: Constraint | None = None

    def __post_init__(self) -> None:
        if isinstance(self.constraint, Labels) and (self.max_tokens != 1 or self.temperature):
            raise ValueError("a Labels request reads one greedy next token: max_tokens=1, T=0")
        if isinstance(self.constraint, Continuation):
            if self.max_tokens != 1 or self.temperature:
                raise ValueError("a Continuation request scores text: max_tokens=1, T=0")
            if not self.constraint.text:
                raise ValueError("a Continuation request needs text to score")

    @classmethod
    def labels(cls, prompt: str, token_ids: list[int] | tuple[int, ...]) -> EngineRequest:
        return cls(prompt, constraint=Labels(tuple(token_ids)))

    @classmethod
    def continuation(cls, prompt: str, text: str) -> EngineRequest:
        return cls(prompt, constraint=Continuation(text))

    @property
    def reproducible(self) -> bool:
        """Greedy or seeded: the same request gives the same answer (so it may be cached)."""
        return self.temperature == 0.0 or self.seed is not None

    def key(self) -> dict[str, Any]:
        """Everything the answer depends on, as plain JSON (the constraint by its kind)."""
        doc = asdict(self)
        if self.constraint is not None:
            doc["constraint"] = {"kind": type(self.constraint).__name__, **doc["constraint"]}
        return doc


@dataclass(frozen=True)
class EngineResult:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    # prompt tokens the engine's prefix cache already held (not computed again); 0 if unknown
    cached_tokens: int = 0
    # Labels requests: token id -> log-probability (processed: after the allowed-token mask)
    label_logprobs: dict[int, float] = field(default_factory=dict)
    # Continuation requests: the log-probability of each of the text's tokens, in order
    token_logprobs: tuple[float, ...] = ()

    @classmethod
    def scored(
        cls, prompt_tokens: int, token_logprobs: tuple[float, ...], cached_tokens: int = 0
    ) -> EngineResult:
        """A Continuation request's result: nothing generated, the text's log-probabilities."""
        return cls("", prompt_tokens, 0, "score", cached_tokens, token_logprobs=token_logprobs)


@runtime_checkable
class Engine(Protocol):
    model_name: str
    max_model_len: int
    max_logprobs: int  # how many label log-probabilities one Labels request may return

    @property
    def healthy(self) -> bool: ...

    async def start(self) -> None: ...

    async def shutdown(self) -> None: ...

    async def complete(self, request: EngineRequest) -> EngineResult: ...

    async def __aenter__(self) -> Engine: ...

    async def __aexit__(self, *exc: object) -> None: ...


class Owned:
    """``async with`` for engines: start unless running; on exit, stop only what this entry
    started (entries nest: each remembers whether it was the one that started the engine)."""

    _entries: list[bool]

    async def __aenter__(self) -> Any:
        entries = self.__dict__.setdefault("_entries", [])
        started = not self.healthy  # type: ignore[attr-defined]
        if started:
            await self.start()  # type: ignore[attr-defined]
        entries.append(started)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.__dict__.setdefault("_entries", []).pop():
            await self.shutdown()  # type: ignore[attr-defined]


def check_labels(request: EngineRequest, max_logprobs: int) -> tuple[int, ...]:
    """The label ids of a Labels request, within what one engine call can return."""
    assert isinstance(request.constraint, Labels)
    ids = request.constraint.token_ids
    if not 0 < len(ids) <= max_logprobs:
        raise ValueError(f"rank 1..{max_logprobs} labels per call")
    return ids
