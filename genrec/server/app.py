"""The FastAPI app behind `genrec serve`.

Routes: POST /v1/chat/completions (OpenAI-compatible), GET /v1/models[/{id}], POST
/v1/recommendations (genrec's native request and result), GET /health (200 once the engine and the
catalog are ready, 503 before), GET /metrics (Prometheus).

    app = create_app(settings)                   # starts its own Recommender in the lifespan
    app = create_app(settings, recommender=rec)  # or serves one already started (not stopped here)
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from genrec.errors import InvalidRequest
from genrec.schema import Recommendation, RecommendRequest
from genrec.server import errors
from genrec.server.chat import Mapped, map_conversation
from genrec.server.guard import GuardMiddleware, InFlightLimiter
from genrec.server.lifecycle import Service
from genrec.server.metrics import Metrics, MetricsMiddleware
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
from genrec.server.profiles import Profile, get_profile, load_profiles
from genrec.server.responses import ResponseRenderer, check_json_schema, json_pieces
from genrec.server.streaming import ClientGone, EventStream, run_watching, stream_events
from genrec.settings import Settings

log = logging.getLogger("genrec.server")


def _version() -> str:
    try:
        return importlib.metadata.version("genrec")
    except importlib.metadata.PackageNotFoundError:
        return "0"


def create_app(
    settings: Settings,
    *,
    recommender: Any = None,
    on_fatal: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    profiles = load_profiles(settings)
    renderers = {
        name: ResponseRenderer(name, getattr(settings, "prompts_dir", None))
        for name in {p.response_template for p in profiles.values()}
    }
    metrics = Metrics()
    limiter = InFlightLimiter(settings.max_in_flight, metrics)
    service = Service(settings, recommender=recommender, on_fatal=on_fatal)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start_background()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(
        title="genrec",
        version=_version(),
        summary="Generative recommendations over an OpenAI-compatible API",
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.metrics = metrics
    app.state.limiter = limiter
    app.state.profiles = profiles
    errors.install(app)
    app.add_middleware(
        GuardMiddleware, api_key=settings.api_key, max_body_bytes=settings.max_body_bytes
    )
    paths = {getattr(r, "path", "") for r in app.routes}  # filled in below, read per request
    app.add_middleware(  # added last = outermost: it sees what the guard turns away
        MetricsMiddleware, metrics=metrics, known_paths=lambda: paths
    )

    # -- operations -----------------------------------------------------------------------------

    @app.get("/health")
    async def health() -> JSONResponse:
        ready = service.ready
        metrics.ready.set(1 if ready else 0)
        return JSONResponse(service.health(), status_code=200 if ready else 503)

    @app.get("/metrics")
    async def prometheus() -> Response:
        metrics.ready.set(1 if service.ready else 0)
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    # -- models ---------------------------------------------------------------------------------

    def model_card(p: Profile) -> dict[str, Any]:
        rec = service.recommender if service.ready else None
        return {
            "id": p.name,
            "object": "model",
            "created": int(service.started_at),
            "owned_by": "genrec",
            "genrec": {
                **p.model_dump(exclude={"name"}),
                "lm": rec.model_name if rec is not None else None,
            },
        }

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card(p) for p in profiles.values()]}

    @app.get("/v1/models/{model_id}")
    async def get_model(model_id: str) -> dict[str, Any]:
        return model_card(get_profile(profiles, model_id))

    # -- native ---------------------------------------------------------------------------------

    @app.post("/v1/recommendations")
    async def recommendations(body: RecommendRequest, request: Request) -> Response:
        rec = service.require()
        request.state.genrec_mode = body.mode or settings.mode
        with limiter.slot():
            try:
                result = await run_watching(request, rec.recommend(body))
            except ClientGone:
                request.state.genrec_outcome = "cancelled"
                return Response(status_code=499)
        metrics.observe_result(result)
        return JSONResponse(result.model_dump(mode="json"))

    # -- OpenAI chat ----------------------------------------------------------------------------

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        profile = get_profile(profiles, body.model)
        fmt = body.response_format
        if fmt is not None and fmt.type == "json_schema" and fmt.json_schema is not None:
            problem = check_json_schema(fmt.json_schema.schema_)
            if problem:
                raise InvalidRequest(problem, param="response_format.json_schema.schema")
        rec = service.require()
        limiter.acquire()
        streaming = False
        try:
            mapped = await anyio.to_thread.run_sync(map_conversation, body, profile, rec.index)
            request.state.genrec_mode = mapped.request.mode
            renderer = renderers[profile.response_template]
            cid, created = completion_id(), now()

            async def pieces(result: Recommendation) -> list[str]:
                if body.wants_json:
                    return json_pieces(result)
                ids = [it.id for it in result.items]
                found = await anyio.to_thread.run_sync(rec.index.get, ids)
                return renderer.pieces(result, {it.id: it for it in found})

            def extra(result: Recommendation) -> dict[str, Any]:
                return genrec_extra(result, mapped, profile)

            if body.stream:
                events = stream_events(
                    lambda: rec.recommend(mapped.request),
                    first=chunk(
                        cid=cid,
                        created=created,
                        model=profile.name,
                        delta={"role": "assistant", "content": ""},
                        **({"usage": None} if body.include_usage else {}),
                    ),
                    render=lambda r: stream_chunks(r, body, cid, created, profile, pieces, extra),
                    state=request.scope.setdefault("state", {}),
                )
                streaming = True
                return EventStream(events, on_close=limiter.release)
            try:
                result = await run_watching(request, rec.recommend(mapped.request))
            except ClientGone:
                request.state.genrec_outcome = "cancelled"
                return Response(status_code=499)
            metrics.observe_result(result)
            return JSONResponse(
                chat_completion(
                    cid=cid,
                    created=created,
                    model=profile.name,
                    content="".join(await pieces(result)),
                    result=result,
                    finish=finish_reason(result, body.token_limit),
                    extra=extra(result),
                )
            )
        finally:
            if not streaming:
                limiter.release()

    async def stream_chunks(
        result: Recommendation,
        body: ChatCompletionRequest,
        cid: str,
        created: int,
        profile: Profile,
        pieces: Callable[[Recommendation], Awaitable[list[str]]],
        extra: Callable[[Recommendation], dict[str, Any]],
    ) -> list[dict[str, Any]]:
        """One chunk per piece (header, each item, footer); the last one carries finish_reason,
        `recommendations` and `genrec`; then the usage chunk when asked for."""
        metrics.observe_result(result)
        common: dict[str, Any] = {"cid": cid, "created": created, "model": profile.name}
        if body.include_usage:
            common["usage"] = None
        parts = await pieces(result)
        out = [chunk(delta={"content": p}, **common) for p in parts[:-1]]
        out.append(
            chunk(
                delta={"content": parts[-1]},
                finish=finish_reason(result, body.token_limit),
                recommendations=recommendations_list(result),
                genrec=extra(result),
                **common,
            )
        )
        if body.include_usage:
            out.append(chunk(delta=None, **{**common, "usage": usage_dict(result)}))
        return out

    paths.update(getattr(r, "path", "") for r in app.routes)
    return app


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
    }
