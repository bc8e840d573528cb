"""POST /v1/chat/completions: an OpenAI ChatCompletionRequest -> a chat completion or its stream.

The wire format is mapped here and only here: the request onto genrec.conversation's plain
`Conversation` (with the model profile's defaults), its result back into OpenAI's completion,
chunk and usage shapes, with genrec's own account of the answer under `genrec`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from fastapi import Request
from fastapi.responses import JSONResponse, Response

from genrec.conversation import Conversation, Mapped, Message, map_conversation
from genrec.errors import InvalidRequest
from genrec.schema import Recommendation
from genrec.server.guard import InFlightLimiter
from genrec.server.lifecycle import Service
from genrec.server.metrics import Metrics
from genrec.server.openai_schema import (
    ChatCompletionRequest,
    chat_completion,
    chunk,
    completion_id,
    finish_reason,
    now,
    recommendations_list,
    usage_dict,
)
from genrec.server.profiles import Profile, get_profile
from genrec.server.responses import ResponseRenderer, check_json_schema, json_pieces
from genrec.server.streaming import EventStream, run_for_client, stream_events

if TYPE_CHECKING:
    from genrec.recommender import Recommender


def conversation_of(body: ChatCompletionRequest, profile: Profile) -> Conversation:
    """The request's messages and options; what it leaves out, its model profile decides."""
    mode = body.mode or profile.mode
    # The profile's template belongs to the profile's mode: another mode gets its own default.
    template = body.template or (profile.template if mode == profile.mode else None)
    return Conversation(
        messages=[Message(m.role, m.text) for m in body.messages],
        history=body.history or [],
        exclude=body.exclude or [],
        filters=[f for f in (profile.filters, body.filters) if f],
        options={
            "k": body.k or profile.k,
            "candidates": body.candidates or profile.candidates,
            "mode": mode,
            "template": template,
            "user_id": body.user_id or body.user,
            "temperature": body.temperature or 0.0,
            "seed": body.seed,
            "max_tokens": body.token_limit,
            "explain": bool(body.explain),
        },
    )


def genrec_extra(result: Recommendation, mapped: Mapped, profile: Profile) -> dict[str, Any]:
    """genrec's own account of a chat answer: how it was made and from what."""
    req = mapped.request
    return {
        "profile": profile.name,
        "mode": result.mode,
        "template": result.template,
        "model": result.model,
        "timings": result.timings.model_dump(),
        "candidates": len(result.candidates),
        "history": req.history,
        "exclude": req.exclude,
        "filters": req.filters,
        "referenced": mapped.referenced,
        "unmatched": result.unmatched,
        "duplicates": result.duplicates,
        "user": result.user.model_dump() if result.user is not None else None,
    }


@dataclass
class ChatAnswer:
    """One chat request on its way out: renders a result as a completion or as chunks."""

    rec: Recommender
    body: ChatCompletionRequest
    profile: Profile
    mapped: Mapped
    renderer: ResponseRenderer
    cid: str = field(default_factory=completion_id)
    created: int = field(default_factory=now)

    def pieces(self, result: Recommendation) -> list[str]:
        """The answer's text in pieces; the catalog fields the template shows come with the
        result (Recommendation.catalog_items), never from the index again."""
        if self.body.wants_json:
            return json_pieces(result)
        return self.renderer.pieces(result)

    def _common(self) -> dict[str, Any]:
        common: dict[str, Any] = {"cid": self.cid, "created": self.created}
        common["model"] = self.profile.name
        if self.body.include_usage:
            common["usage"] = None  # every chunk but the last, as OpenAI sends them
        return common

    def first_chunk(self) -> dict[str, Any]:
        return chunk(delta={"role": "assistant", "content": ""}, **self._common())

    def completion(self, result: Recommendation) -> dict[str, Any]:
        return chat_completion(
            cid=self.cid,
            created=self.created,
            model=self.profile.name,
            content="".join(self.pieces(result)),
            result=result,
            finish=finish_reason(result, self.body.token_limit),
            extra=genrec_extra(result, self.mapped, self.profile),
        )

    def chunks(self, result: Recommendation) -> list[dict[str, Any]]:
        """One chunk per piece (header, each item, footer); the last one carries finish_reason,
        `recommendations` and `genrec`; then the usage chunk when asked for."""
        common = self._common()
        parts = self.pieces(result)
        out = [chunk(delta={"content": p}, **common) for p in parts[:-1]]
        out.append(
            chunk(
                delta={"content": parts[-1]},
                finish=finish_reason(result, self.body.token_limit),
                recommendations=recommendations_list(result),
                genrec=genrec_extra(result, self.mapped, self.profile),
                **common,
            )
        )
        if self.body.include_usage:
            out.append(chunk(delta=None, **{**common, "usage": usage_dict(result)}))
        return out


class ChatService:
    """Answers chat completions within the in-flight limit; a stream holds its slot until it
    closes."""

    def __init__(
        self,
        service: Service,
        profiles: dict[str, Profile],
        renderers: dict[str, ResponseRenderer],
        limiter: InFlightLimiter,
        metrics: Metrics,
    ):
        self.service = service
        self.profiles = profiles
        self.renderers = renderers
        self.limiter = limiter
        self.metrics = metrics

    async def answer(self, body: ChatCompletionRequest, request: Request) -> Response:
        profile = get_profile(self.profiles, body.model)
        _check_response_format(body)
        rec = self.service.require()
        self.limiter.acquire()
        streaming = False
        try:
            conversation = conversation_of(body, profile)
            mapped = await anyio.to_thread.run_sync(map_conversation, conversation, rec.index)
            request.state.genrec_mode = mapped.request.mode
            renderer = self.renderers[profile.response_template]
            answer = ChatAnswer(rec, body, profile, mapped, renderer)
            if body.stream:
                response = self._stream(answer, request)
                streaming = True
                return response
            result = await run_for_client(request, rec.recommend(mapped.request))
            if result is None:
                return Response(status_code=499)  # nginx's "client closed request"
            self.metrics.observe_result(result)
            return JSONResponse(answer.completion(result))
        finally:
            if not streaming:
                self.limiter.release()

    def _stream(self, answer: ChatAnswer, request: Request) -> EventStream:
        async def render(result: Recommendation) -> list[dict[str, Any]]:
            self.metrics.observe_result(result)
            return answer.chunks(result)

        events = stream_events(
            lambda: answer.rec.recommend(answer.mapped.request),
            first=answer.first_chunk(),
            render=render,
            state=request.scope.setdefault("state", {}),
        )
        return EventStream(events, on_close=self.limiter.release)


def _check_response_format(body: ChatCompletionRequest) -> None:
    fmt = body.response_format
    if fmt is not None and fmt.type == "json_schema" and fmt.json_schema is not None:
        problem = check_json_schema(fmt.json_schema.schema_)
        if problem:
            raise InvalidRequest(problem, param="response_format.json_schema.schema")
