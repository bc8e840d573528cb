"""Running a recommendation for an HTTP client that may go away, and streaming it as SSE.

A client that disconnects cancels its engine work: a plain request is watched with
`request.is_disconnected()`; a stream is cancelled by Starlette when the client leaves, and the
cancellation reaches the recommendation task. Once a stream has started, an error arrives as a
final `data: {"error": ...}` event, then `data: [DONE]`, never as a broken connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from genrec.errors import GenrecError
from genrec.schema import Recommendation
from genrec.server.errors import http_status, openai_error
from genrec.server.metrics import outcome_of

log = logging.getLogger("genrec.server")
T = TypeVar("T")

POLL_S = 0.2  # how often a plain request checks that its client is still there
CANCEL_GRACE_S = 5.0  # how long to wait for cancelled engine work to wind down


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


async def _cancel(task: asyncio.Future) -> None:
    if task.done():
        return
    task.cancel()
    with suppress(BaseException):
        await asyncio.wait({task}, timeout=CANCEL_GRACE_S)


async def run_watching(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it (and raising ClientGone) if the client disconnects."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=POLL_S)
            if done:
                return task.result()
            if await request.is_disconnected():
                raise ClientGone()
    finally:
        await _cancel(task)


async def run_for_client(request: Request, work: Awaitable[T]) -> T | None:
    """`work`'s result, or None when the client left first (recorded as a cancelled request)."""
    try:
        return await run_watching(request, work)
    except ClientGone:
        request.state.genrec_outcome = "cancelled"
        return None


def sse(doc: Any) -> str:
    return f"data: {json.dumps(doc, ensure_ascii=False)}\n\n"


DONE = "data: [DONE]\n\n"

INTERNAL = {
    "error": {
        "message": "internal server error; the server log has the details",
        "type": "server_error",
        "param": None,
        "code": None,
    }
}


async def stream_events(
    work: Callable[[], Awaitable[Recommendation]],
    *,
    first: dict[str, Any],
    render: Callable[[Recommendation], Awaitable[list[dict[str, Any]]]],
    state: dict[str, Any],
) -> AsyncIterator[str]:
    """`first` goes out at once; then `work()` runs the recommendation (only once the stream has
    started), and `render` turns it into the remaining chunks. `state` gets the outcome for the
    metrics."""
    yield sse(first)
    task = asyncio.ensure_future(work())
    try:
        docs = await render(await task)
    except GenrecError as exc:
        state["genrec_outcome"] = outcome_of(http_status(exc))
        docs = [openai_error(exc)]
    except asyncio.CancelledError:
        state["genrec_outcome"] = "cancelled"
        await _cancel(task)
        raise
    except Exception:
        log.exception("a streamed recommendation failed")
        state["genrec_outcome"] = "error"
        docs = [INTERNAL]
    finally:
        await _cancel(task)
    try:
        for doc in docs:
            yield sse(doc)
        yield DONE
    except asyncio.CancelledError:
        state["genrec_outcome"] = "cancelled"
        raise


class EventStream(StreamingResponse):
    """An SSE response that always runs `on_close` (releasing the in-flight slot) and closes its
    generator, whether the stream ended, failed, or never started because the client left."""

    def __init__(self, events: AsyncIterator[str], on_close: Callable[[], None]):
        super().__init__(
            events,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        self._events = events
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with suppress(BaseException):
                await self._events.aclose()  # type: ignore[attr-defined]
            self._on_close()
