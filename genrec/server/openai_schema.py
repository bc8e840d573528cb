"""The OpenAI chat-completions request genrec accepts, and the response and chunk shapes it sends.

Requests are validated strictly: an unknown top-level field is a 400 naming it (genrec's own
options ride as extra body fields, so a typo like `filter` must not pass silently). OpenAI fields
that mean nothing for a recommender (top_p, stop, penalties...) are accepted and ignored.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from genrec.schema import Recommendation
from genrec.settings import Mode


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    text: str | None = None

    @model_validator(mode="after")
    def _text_only(self) -> TextPart:
        if self.type != "text":
            raise ValueError(f"content parts of type {self.type!r} are not supported; send text")
        if self.text is None:
            raise ValueError("a text content part needs `text`")
        return self


class ChatMessage(BaseModel):
    # Clients echo assistant messages back with extra keys (refusal, annotations...): ignore them.
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    @field_validator("role")
    @classmethod
    def _no_tools(cls, role: str) -> str:
        if role in ("tool", "function"):
            raise ValueError(f"{role} messages are not supported: genrec does not call tools")
        return role

    @property
    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(part.text or "" for part in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")

    include_usage: bool = False


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_when_needed(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type json_schema needs a `json_schema` object")
        return self


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=4096)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    seed: int | None = None
    user: str | None = None
    response_format: ResponseFormat | None = None
    n: int | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    function_call: Any = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    # OpenAI fields accepted and ignored: they do not apply to choosing catalog items.
    top_p: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    stop: str | list[str] | None = None
    logit_bias: dict[str, float] | None = None
    metadata: dict[str, Any] | None = None
    store: bool | None = None
    parallel_tool_calls: bool | None = None
    service_tier: str | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    # genrec's own options
    history: list[str] | None = Field(default=None, max_length=200)
    user_id: str | None = None
    k: int | None = Field(default=None, ge=1, le=100)
    candidates: int | None = Field(default=None, ge=1, le=200)
    filters: dict[str, Any] | None = None
    exclude: list[str] | None = None
    mode: Mode | None = None
    template: str | None = None

    @field_validator("n")
    @classmethod
    def _one_choice(cls, n: int | None) -> int | None:
        if n is not None and n != 1:
            raise ValueError("only n=1 is supported: genrec returns one ranked list per request")
        return n

    @field_validator("tools", "functions")
    @classmethod
    def _no_tools(cls, tools: list[Any] | None) -> list[Any] | None:
        if tools:
            raise ValueError("tools and functions are not supported: genrec does not call tools")
        return tools

    @field_validator("tool_choice", "function_call")
    @classmethod
    def _no_tool_choice(cls, choice: Any) -> Any:
        if choice not in (None, "none", "auto"):
            raise ValueError("tool choice is not supported: genrec does not call tools")
        return choice

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, logprobs: bool | None) -> bool | None:
        if logprobs:
            raise ValueError("logprobs are not supported; see each item's `score`")
        return logprobs

    @property
    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def wants_json(self) -> bool:
        return self.response_format is not None and self.response_format.type != "text"

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


# --- responses ---------------------------------------------------------------------------------


def completion_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex


def now() -> int:
    return int(time.time())


def usage_dict(result: Recommendation) -> dict[str, int]:
    u = result.usage
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
    }


def recommendations_list(result: Recommendation) -> list[dict[str, Any]]:
    return [item.model_dump() for item in result.items]


def finish_reason(result: Recommendation, token_limit: int | None) -> str:
    # The LM stopped at the caller's token limit: OpenAI calls that "length". Only describe mode
    # generates under max_tokens; rank and generate size their own output (a complete list of
    # titles may well exceed a small max_tokens), so they always finish with "stop".
    if token_limit is not None and result.mode == "describe":
        if result.usage.completion_tokens >= token_limit:
            return "length"
    return "stop"


def chat_completion(
    *,
    cid: str,
    created: int,
    model: str,
    content: str,
    result: Recommendation,
    finish: str,
    extra: dict[str, Any],
) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": finish,
            }
        ],
        "usage": usage_dict(result),
        "recommendations": recommendations_list(result),
        "genrec": extra,
    }


def chunk(
    *,
    cid: str,
    created: int,
    model: str,
    delta: dict[str, Any] | None,
    finish: str | None = None,
    **top: Any,
) -> dict[str, Any]:
    """One `chat.completion.chunk`; delta=None makes the usage chunk (`choices: []`)."""
    choices = (
        []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
    )
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
        **top,
    }
