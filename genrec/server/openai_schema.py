"""The OpenAI chat-completions request genrec accepts, and the response and chunk shapes it sends.

Requests are validated strictly: an unknown top-level field is a 400 naming it (genrec's own
options ride as extra body fields, so a typo like `filter` must not pass silently). OpenAI fields
that mean nothing for a recommender (top_p, stop, penalties...) are accepted and ignored, within
OpenAI's own bounds.

Every field is strict about JSON types (`"stream": "yes"`, `"k": "5"`, `"k": 5.0`, `"seed": true`
are 400s, not coerced; a number field takes an integer) and bounded, so what one request may ask
of the mapping and the store is refused at the edge, before any catalog or engine work:

- the conversation: at most MAX_MESSAGES messages, MAX_CONVERSATION_CHARS characters of text in
  all, MAX_CONTENT_PARTS parts in one message (mapping a conversation searches the catalog once
  per user message, about 2 ms each: 6,000 messages cost seconds);
- filters: genrec.filters' bounds (size, depth, value sizes);
- a response_format JSON schema: MAX_SCHEMA_NODES values, MAX_SCHEMA_DEPTH levels, strings of
  MAX_SCHEMA_STRING characters (checking a schema costs time per subschema: 20,000 `anyOf`
  entries took 25 s; and it recurses: a 300-deep one was a RecursionError, a 500);
- integers as OpenAI bounds them (seed within signed 64 bits, n, top_logprobs, logit_bias),
  numbers in their ranges (temperature 0..2, top_p 0..1, penalties -2..2), and strings sized.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from genrec.schema import (
    MAX_EXCLUDE,
    MAX_HISTORY,
    UNICODE,
    Filters,
    ItemRef,
    Name,
    Recommendation,
    Seed,
    Temperature,
    Text,
    TokenLimit,
)
from genrec.settings import Mode

MAX_MESSAGES = 100
MAX_CONVERSATION_CHARS = 100_000  # all messages' text together
MAX_CONTENT_PARTS = 100  # in one message
# A response_format JSON schema is only checked against genrec's fixed output (30 values):
# checking costs about 1.5 ms per subschema, and Python's regex compiler recurses per group.
MAX_SCHEMA_NODES = 256  # objects, arrays and values
MAX_SCHEMA_DEPTH = 32  # objects and arrays nested
MAX_SCHEMA_STRING = 1000  # characters in one key or string (a `pattern`, say)

Short = Annotated[StrictStr, Field(max_length=256), UNICODE]  # ignored strings, sized all the same


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    type: Short
    text: Text | None = None

    @model_validator(mode="after")
    def _text_only(self) -> TextPart:
        if self.type != "text":
            raise ValueError(f"content parts of type {self.type!r} are not supported; send text")
        if self.text is None:
            raise ValueError("a text content part needs `text`")
        return self


class ChatMessage(BaseModel):
    # Clients echo assistant messages back with extra keys (refusal, annotations...): ignore them.
    model_config = ConfigDict(extra="ignore", strict=True)

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Text | Annotated[list[TextPart], Field(max_length=MAX_CONTENT_PARTS)] | None = None
    name: Short | None = None

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
    model_config = ConfigDict(extra="ignore", strict=True)

    include_usage: StrictBool = False


def _json_tree_problem(value: Any, max_nodes: int, max_depth: int, max_string: int) -> str | None:
    """Whether a JSON value holds more than max_nodes values (itself, and everything in it),
    nests objects and arrays deeper than max_depth or holds a key or string longer than
    max_string; iterative, stopping at the first excess."""
    too_many = f"has more than {max_nodes} values (objects, arrays and what they hold)"
    too_long = f"holds a key or string longer than {max_string} characters"
    nodes = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if isinstance(node, str) and len(node) > max_string:
            return too_long
        if not isinstance(node, dict | list):
            continue
        if isinstance(node, dict) and any(len(key) > max_string for key in node):
            return too_long
        if depth > max_depth:
            return f"nests objects and arrays more than {max_depth} deep"
        if nodes + len(stack) + len(node) > max_nodes:
            return too_many
        stack.extend(
            (child, depth + 1) for child in (node.values() if isinstance(node, dict) else node)
        )
    return None


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, strict=True)

    name: Annotated[StrictStr, Field(min_length=1, max_length=64), UNICODE]
    description: Annotated[StrictStr, Field(max_length=4096), UNICODE] | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: StrictBool | None = None

    @field_validator("schema_")
    @classmethod
    def _bounded(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is not None:
            problem = _json_tree_problem(
                schema, MAX_SCHEMA_NODES, MAX_SCHEMA_DEPTH, MAX_SCHEMA_STRING
            )
            if problem:
                raise ValueError(problem)
        return schema


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_when_needed(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type json_schema needs a `json_schema` object")
        return self


# OpenAI's metadata: 16 pairs, keys up to 64 characters, values up to 512.
Metadata = Annotated[
    dict[
        Annotated[StrictStr, Field(max_length=64), UNICODE],
        Annotated[StrictStr, Field(max_length=512), UNICODE],
    ],
    Field(max_length=16),
]
# Token ID -> an integer bias in -100..100.
LogitBias = Annotated[
    dict[
        Annotated[StrictStr, Field(max_length=32), UNICODE],
        Annotated[StrictInt, Field(ge=-100, le=100)],
    ],
    Field(max_length=1024),
]
Penalty = Annotated[StrictFloat, Field(ge=-2.0, le=2.0)]


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: Annotated[StrictStr, Field(min_length=1, max_length=256), UNICODE]
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: StrictBool | None = False
    stream_options: StreamOptions | None = None
    max_tokens: TokenLimit | None = None
    max_completion_tokens: TokenLimit | None = None
    temperature: Temperature | None = None
    seed: Seed | None = None
    user: Name | None = None
    response_format: ResponseFormat | None = None
    n: StrictInt | None = Field(default=None, ge=1, le=128)
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    function_call: Any = None
    logprobs: StrictBool | None = None
    top_logprobs: StrictInt | None = Field(default=None, ge=0, le=20)
    # OpenAI fields accepted and ignored: they do not apply to choosing catalog items.
    top_p: StrictFloat | None = Field(default=None, ge=0.0, le=1.0)
    frequency_penalty: Penalty | None = None
    presence_penalty: Penalty | None = None
    stop: Short | Annotated[list[Short], Field(max_length=4)] | None = None
    logit_bias: LogitBias | None = None
    metadata: Metadata | None = None
    store: StrictBool | None = None
    parallel_tool_calls: StrictBool | None = None
    service_tier: Short | None = None
    reasoning_effort: Short | None = None
    verbosity: Short | None = None
    prompt_cache_key: Short | None = None
    safety_identifier: Annotated[StrictStr, Field(max_length=128), UNICODE] | None = None
    # genrec's own options
    history: list[ItemRef] | None = Field(default=None, max_length=MAX_HISTORY)
    user_id: Name | None = None
    k: StrictInt | None = Field(default=None, ge=1, le=100)
    candidates: StrictInt | None = Field(default=None, ge=1, le=200)
    filters: Filters = None
    exclude: list[ItemRef] | None = Field(default=None, max_length=MAX_EXCLUDE)
    mode: Mode | None = None
    template: Name | None = None
    # one sentence per item from the LM, naming only that item's evidence (genrec.explain)
    explain: StrictBool | None = None

    @field_validator("messages")
    @classmethod
    def _bounded_conversation(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        total = sum(len(m.text) for m in messages)
        if total > MAX_CONVERSATION_CHARS:
            raise ValueError(
                f"the conversation has {total} characters of text, more than the "
                f"{MAX_CONVERSATION_CHARS} genrec reads; send the recent messages"
            )
        return messages

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


def usage_dict(result: Recommendation) -> dict[str, Any]:
    u = result.usage
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        # OpenAI's shape for prefix-cache hits
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
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
