"""The FastAPI app behind `genrec serve`.

Routes: POST /v1/chat/completions (OpenAI-compatible), GET /v1/models[/{id}], POST
/v1/recommendations (genrec's native request and result), POST /v1/events, GET and DELETE
/v1/users/{id} (genrec.server.events_routes), GET /health (200 once the engine and the
catalog are ready, 503 before), GET /metrics (Prometheus).

    app = create_app(settings)                   # starts its own Recommender in the lifespan
    app = create_app(settings, recommender=rec)  # or serves one already started (not stopped here)
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from genrec.schema import RecommendRequest
from genrec.server import errors, events_routes
from genrec.server.chat_service import ChatService
from genrec.server.guard import GuardMiddleware, InFlightLimiter
from genrec.server.lifecycle import Service
from genrec.server.metrics import Metrics, MetricsMiddleware
from genrec.server.openai_schema import ChatCompletionRequest
from genrec.server.profiles import Profile, get_profile, load_profiles
from genrec.server.responses import ResponseRenderer
from genrec.server.streaming import run_for_client
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
                "retriever": rec.retrievers.describe() if rec is not None else None,
                "ranker": rec.ranker() if rec is not None else None,
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
            result = await run_for_client(request, rec.recommend(body))
        if result is None:
            return Response(status_code=499)  # nginx's "client closed request"
        metrics.observe_result(result)
        return JSONResponse(result.model_dump(mode="json"))

    # -- OpenAI chat ----------------------------------------------------------------------------

    chat = ChatService(service, profiles, renderers, limiter, metrics)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        return await chat.answer(body, request)

    # -- events and users -----------------------------------------------------------------------

    events_routes.register(app, service, settings)

    paths.update(getattr(r, "path", "") for r in app.routes)
    return app
