"""The request and result of one recommendation: the contract shared by the async API, the CLI,
the HTTP server and the evaluation suite."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    model_validator,
)

from genrec.data.item import Item
from genrec.filters import bounds_problem, unicode_problem
from genrec.settings import Mode

GroundedBy = Literal["label", "score", "exact", "normalized", "fuzzy", "embedding"]

# The wire's scalar types: a JSON value of the wrong type is refused, never coerced ("yes" is not
# true, "5" and 5.0 are not 5, true is not 1). A float field still takes an integer (1 is 1.0),
# as JSON does. Containers stay lax, so a Python caller may pass a tuple where a list belongs.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _unicode(text: str) -> str:
    if problem := unicode_problem(text):
        raise ValueError(problem)
    return text


# Every string: valid Unicode. A length bound goes before it in Annotated (after it, pydantic
# reports the length in "items", not characters).
UNICODE = AfterValidator(_unicode)
MAX_HISTORY = 200  # history items one request may carry
MAX_EXCLUDE = 50_000  # IDs; an evaluation masks the older part of a heavy rater's history this way
MAX_TEXT = 4000  # characters of the query, and of the system message

Text = Annotated[StrictStr, UNICODE]
ItemRef = Annotated[StrictStr, Field(max_length=512), UNICODE]  # an item ID or title
Name = Annotated[StrictStr, Field(max_length=256), UNICODE]  # a user ID, a template name
LongText = Annotated[StrictStr, Field(max_length=MAX_TEXT), UNICODE]
Seed = Annotated[StrictInt, Field(ge=INT64_MIN, le=INT64_MAX)]  # what OpenAI and vLLM take
Temperature = Annotated[StrictFloat, Field(ge=0.0, le=2.0)]
TokenLimit = Annotated[StrictInt, Field(ge=1, le=4096)]


def _bounded_filters(where: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a filter asks of the store is bounded at the edge; its grammar is checked when the
    request is planned (genrec.filters.validate_where)."""
    if where is not None and (problem := bounds_problem(where)):
        raise ValueError(problem)
    return where


Filters = Annotated[dict[str, Any] | None, AfterValidator(_bounded_filters)]


class RecommendRequest(BaseModel):
    """What the caller asks for. Unset options fall back to the Settings defaults."""

    model_config = ConfigDict(extra="forbid")

    query: LongText | None = None
    # Item IDs or titles, oldest first.
    history: list[ItemRef] = Field(default_factory=list, max_length=MAX_HISTORY)
    k: StrictInt | None = Field(default=None, ge=1, le=100)
    candidates: StrictInt | None = Field(default=None, ge=1, le=200)
    filters: Filters = None  # a Chroma `where` over item metadata
    exclude: list[ItemRef] = Field(default_factory=list, max_length=MAX_EXCLUDE)
    mode: Mode | None = None
    # which retriever finds the candidates (content, itemknn, ease, sasrec, hybrid); None = default
    retriever: Annotated[StrictStr, Field(max_length=64), UNICODE] | None = None
    template: Name | None = None
    # The caller's system message: it reaches the template's system slot, nothing else.
    system: LongText | None = None
    # An opaque user ID: the user's stored events (genrec.events) join the history, and what
    # the user bought or rated is not recommended again unless include_consumed.
    user_id: Annotated[StrictStr, Field(min_length=1, max_length=256), UNICODE] | None = None
    include_consumed: StrictBool = False
    temperature: Temperature = 0.0
    seed: Seed | None = None
    max_tokens: TokenLimit | None = None
    # one sentence per item written by the LM from that item's evidence (costs an LM call)
    explain: StrictBool = False

    @model_validator(mode="after")
    def _needs_something(self) -> RecommendRequest:
        if not (self.query and self.query.strip()) and not self.history and not self.user_id:
            raise ValueError("give a query or a history (or a user_id)")
        return self


EvidenceKind = Literal["history", "user", "query", "popular", "trending", "lm", "fallback"]


class Evidence(BaseModel):
    """One reason an item was picked (genrec.explain), computed from the request's own scores.

    ``weight``: the share of the item's retrieval score this part made (the retrieval evidence
    of an item sums to at most 1); for ``lm``, the LM's share of the final order."""

    kind: EvidenceKind
    weight: float
    item_id: str | None = None  # history / user: the item that contributed
    title: str | None = None
    text: str | None = None  # query: the matched words (or the whole query for a dense match)
    terms: list[str] | None = None  # query: the matched words, one by one
    source: str | None = None  # the retriever (member) the part came from
    rank_before: int | None = None  # lm: the retriever's rank, then the final one
    rank_after: int | None = None
    lm_logprob: float | None = None


class RecommendedItem(BaseModel):
    id: str
    title: str
    score: float
    rank: int  # 1-based
    grounded_by: GroundedBy
    confidence: float = Field(ge=0.0, le=1.0)
    from_candidates: bool = True
    # The parts of a fused score (modes that score every candidate, e.g. rank): the LM's
    # log-probability of the item among the candidates and the retriever's own score.
    lm_logprob: float | None = None
    retrieval_score: float | None = None
    # why it was picked, strongest first (genrec.explain); never empty in a Recommendation
    because: list[Evidence] = Field(default_factory=list)
    reason: str | None = None  # the evidence in a few plain words, in the user's language
    explanation: str | None = None  # the LM's sentence, only with `explain: true`


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    # of prompt_tokens, those the engine's prefix cache held (not computed again)
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Timings(BaseModel):
    """Per-stage wall time in milliseconds."""

    retrieve_ms: float = 0.0
    render_ms: float = 0.0
    llm_ms: float = 0.0
    ground_ms: float = 0.0
    total_ms: float = 0.0


# The stage names in order (retrieve ... total), so every per-stage report follows Timings.
STAGES: tuple[str, ...] = tuple(f.removesuffix("_ms") for f in Timings.model_fields)


class UserSummary(BaseModel):
    """What a request with ``user_id`` read from the event store."""

    id: str
    history: list[str] = Field(default_factory=list)  # stored items used, oldest first
    excluded: int = 0  # items the user bought or rated, excluded beyond the history
    # nothing known of the user and no query: the catalog's most popular items were served
    cold_start: bool = False


class Recommendation(BaseModel):
    items: list[RecommendedItem]
    mode: Mode
    template: str
    model: str
    candidates: list[str]  # the retrieved candidate IDs, in retrieval order
    outputs: list[str] = Field(default_factory=list)  # what the LM produced, before grounding
    unmatched: list[str] = Field(default_factory=list)  # outputs that grounded to nothing
    duplicates: int = 0  # outputs that grounded to an item already returned
    usage: Usage = Field(default_factory=Usage)
    timings: Timings = Field(default_factory=Timings)
    user: UserSummary | None = None  # set when the request had a user_id
    # the retriever's weight in the fused score (0: the LM's order alone); None: not fused
    fusion_weight: float | None = None
    # the retriever that found the candidates, and the trained bundle serving when the request
    # started (None: none trained); one request is served by one bundle (docs/deployment.md)
    retriever: str | None = None
    bundle: str | None = None
    # The recommended items' catalog records (genres, year, description: what the chat answer's
    # text shows), carried from the request's own retrieval so that nothing fetches them again.
    # Not part of the wire (a result read back from JSON has none).
    _catalog: dict[str, Item] = PrivateAttr(default_factory=dict)

    @property
    def catalog_items(self) -> dict[str, Item]:
        """The recommended items' catalog records, by ID."""
        return self._catalog

    def with_catalog(self, items: Iterable[Item]) -> Recommendation:
        """This result, carrying ``items`` (those of its own items) as its catalog records."""
        wanted = {it.id for it in self.items}
        self._catalog = {item.id: item for item in items if item.id in wanted}
        return self
