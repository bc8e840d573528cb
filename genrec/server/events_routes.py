"""The event and user routes: POST /v1/events, GET and DELETE /v1/users/{id}.

They need the catalog (to check item IDs) and the event store, not the LM: they answer as soon as
the catalog is open, while the engine may still be starting. The API key and the body size limit
apply as on every /v1 route (genrec.server.guard). A batch answers 200 with what happened to each
event (``accepted``, ``duplicates``, ``rejected`` and, per rejected event, its index and reason)
only once the accepted events are committed; a store that cannot be reached is a retryable 503.
"""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from genrec.errors import InvalidRequest
from genrec.events import MAX_BATCH, record_events
from genrec.events.model import MAX_USER_ID
from genrec.server.lifecycle import Service
from genrec.settings import Settings


class EventBatch(BaseModel):
    """The body of POST /v1/events. The events stay raw here: each is checked on its own, so one
    bad event does not refuse the batch."""

    model_config = ConfigDict(extra="forbid")

    events: list[Any] = Field(min_length=1, max_length=MAX_BATCH)


def _user_id(user_id: str) -> str:
    if not user_id or len(user_id) > MAX_USER_ID:
        raise InvalidRequest(
            f"user_id must be 1 to {MAX_USER_ID} characters", param="user_id", code="invalid_user"
        )
    return user_id


def register(app: FastAPI, service: Service, settings: Settings) -> None:
    @app.post("/v1/events")
    async def post_events(body: EventBatch) -> JSONResponse:
        store, index = service.require_events()
        result = await anyio.to_thread.run_sync(record_events, store, index, body.events)
        return JSONResponse(result.as_dict())

    # `:path`: an opaque user ID may contain a slash (sent as %2F)
    @app.get("/v1/users/{user_id:path}")
    async def get_user(user_id: str) -> JSONResponse:
        store, index = service.require_events()
        state = await anyio.to_thread.run_sync(
            store.user_state, index.name, _user_id(user_id), settings.user_history
        )
        return JSONResponse(
            {
                "object": "user",
                "id": state.user_id,
                "collection": index.name,
                "history": list(state.history),
                "consumed": sorted(state.consumed),
                "known": state.known,
            }
        )

    @app.delete("/v1/users/{user_id:path}")
    async def delete_user(user_id: str) -> JSONResponse:
        store, _ = service.require_events()
        deleted = await anyio.to_thread.run_sync(store.forget, _user_id(user_id))
        return JSONResponse(
            {"object": "user.deleted", "id": user_id, "deleted": True, "events_deleted": deleted}
        )
