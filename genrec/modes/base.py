"""What a decoding mode is: one object that owns its request checks, its answer room, its output
constraint, its decode and its grounding. The Recommender runs every mode the same way::

    mode.check(plan)                           # before any I/O: a 400 naming the field
    room = mode.answer_room(plan, candidates)  # tokens the answer needs in the context
    decoded = await mode.decode(job)           # engine calls
    picks = await mode.ground(job, decoded)    # text -> catalog items + scores

Adding a mode is one new module here and one entry in :data:`genrec.modes.MODES`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from genrec.data.item import Item
from genrec.engines.base import Engine, EngineResult
from genrec.grounding import Catalog, Grounded, Match
from genrec.schema import RecommendRequest, Usage

if TYPE_CHECKING:
    from genrec.flow.prompt import PromptFrame
    from genrec.prompts import ChatTokenizer, PromptTemplate, RenderedPrompt
    from genrec.settings import Settings


@dataclass
class Plan:
    """A validated request: everything decided before any I/O."""

    request: RecommendRequest
    mode: DecodingMode
    template: PromptTemplate
    k: int
    n: int
    max_new_tokens: int
    settings: Settings


@dataclass(frozen=True)
class Job:
    """One request on its way through a mode: what the mode may use (the engine, the model's
    tokenizer, what grounding needs of the catalog, the prompt's frame) and what the request has
    become (the plan, the rendered prompt, the candidates, the IDs never to return)."""

    engine: Engine
    tokenizer: ChatTokenizer
    catalog: Catalog  # embedding and search, for grounding beyond exact matches
    plan: Plan
    frame: PromptFrame  # the one way this request's prompt is rendered (genrec.flow.prompt)
    rendered: RenderedPrompt
    candidates: list[Item]
    banned: set[str]  # history + exclusions
    # the retriever's score of each candidate (parallel to candidates; empty when unknown)
    retrieval_scores: tuple[float, ...] = ()

    def rerender(
        self, candidates: list[Item], *, history: bool = True, query: bool = True
    ) -> RenderedPrompt:
        """The prompt rendered again through the request's frame: other candidates (rank's
        reversed order), or without the need (likelihood's unconditional prompt)."""
        return self.frame.render(candidates, history=history, query=query)


@dataclass
class Decoded:
    """What the engine produced, before grounding."""

    outputs: list[str]  # one entry per produced label/line/description
    usage: Usage = field(default_factory=Usage)
    calls: int = 0  # engine calls made
    # modes that score every candidate (rank): (candidate, score), best first, all N; the
    # score is a probability (rank) or, with score_is_log, a log-score (e.g. a log-likelihood)
    ranked: list[tuple[int, float]] = field(default_factory=list)
    score_is_log: bool = False


@dataclass
class Picks:
    """Grounded items with their scores (parallel lists), plus what did not ground."""

    grounded: Grounded
    scores: list[float]


class DecodingMode(Protocol):
    name: str

    def check(self, plan: Plan) -> None: ...

    def answer_room(self, plan: Plan, candidates: list[Item]) -> int: ...

    async def decode(self, job: Job) -> Decoded: ...

    async def ground(self, job: Job, decoded: Decoded) -> Picks: ...


def add_usage(decoded: Decoded, result: EngineResult) -> None:
    decoded.calls += 1
    decoded.usage.prompt_tokens += result.prompt_tokens
    decoded.usage.cached_tokens += result.cached_tokens
    decoded.usage.completion_tokens += result.completion_tokens


__all__ = ["Decoded", "DecodingMode", "Job", "Match", "Picks", "Plan", "add_usage"]
