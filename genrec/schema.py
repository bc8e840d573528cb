"""The request and result of one recommendation: the contract shared by the async API, the CLI,
the HTTP server and the evaluation suite."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from genrec.settings import Mode

GroundedBy = Literal["label", "exact", "normalized", "fuzzy", "embedding"]
MAX_HISTORY = 200  # history items one request may carry


class RecommendRequest(BaseModel):
    """What the caller asks for. Unset options fall back to the Settings defaults."""

    model_config = ConfigDict(extra="forbid")

    query: str | None = Field(default=None, max_length=4000)
    # Item IDs or titles, oldest first.
    history: list[str] = Field(default_factory=list, max_length=MAX_HISTORY)
    k: int | None = Field(default=None, ge=1, le=100)
    candidates: int | None = Field(default=None, ge=1, le=200)
    filters: dict[str, Any] | None = None  # a Chroma `where` over item metadata
    exclude: list[str] = Field(default_factory=list)
    mode: Mode | None = None
    # which retriever finds the candidates (content, itemknn, ease, sasrec, hybrid); None = default
    retriever: str | None = Field(default=None, max_length=64)
    template: str | None = None
    # The caller's system message: it reaches the template's system slot, nothing else.
    system: str | None = Field(default=None, max_length=4000)
    user_id: str | None = None
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    seed: int | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=4096)

    @model_validator(mode="after")
    def _needs_something(self) -> RecommendRequest:
        if not (self.query and self.query.strip()) and not self.history:
            raise ValueError("give a query or a history (or both)")
        return self


class RecommendedItem(BaseModel):
    id: str
    title: str
    score: float
    rank: int  # 1-based
    grounded_by: GroundedBy
    confidence: float = Field(ge=0.0, le=1.0)
    from_candidates: bool = True


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0

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


class Recommendation(BaseModel):
    items: list[RecommendedItem]
    mode: Mode
    retriever: str = "content"  # the retriever that found the candidates
    template: str
    model: str
    candidates: list[str]  # the retrieved candidate IDs, in retrieval order
    outputs: list[str] = Field(default_factory=list)  # what the LM produced, before grounding
    unmatched: list[str] = Field(default_factory=list)  # outputs that grounded to nothing
    duplicates: int = 0  # outputs that grounded to an item already returned
    usage: Usage = Field(default_factory=Usage)
    timings: Timings = Field(default_factory=Timings)
