"""What stands before the routes: the API key, the body size limit, and the in-flight limit.

The key and the body size are checked in an ASGI middleware, before FastAPI reads the body, so a
wrong key is a 401 even when the body is malformed, and an oversized body is refused (413) from its
Content-Length, or once the bytes actually streamed pass the limit, without buffering more.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterator
from contextlib import contextmanager

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genrec.errors import BodyTooLarge, GenrecError, RateLimited, Unauthorized
from genrec.server.errors import openai_error, wire
from genrec.server.metrics import Metrics


async def _send_error(send: Send, exc: GenrecError) -> None:
    body = json.dumps(openai_error(exc)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in wire(exc).headers.items()]
    if isinstance(exc, BodyTooLarge):
        headers.append((b"connection", b"close"))  # the rest of the body is not read
    await send({"type": "http.response.start", "status": wire(exc).status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def bearer_ok(authorization: str | None, api_key: str) -> bool:
    if not authorization:
        return False
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode(), api_key.encode())


class GuardMiddleware:
    def __init__(
        self, app: ASGIApp, *, api_key: str | None, max_body_bytes: int, protected: str = "/v1"
    ):
        self.app = app
        self.api_key = api_key
        self.max_body = max_body_bytes
        self.protected = protected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path: str = scope["path"]
        if self.api_key and (path == self.protected or path.startswith(self.protected + "/")):
            if not bearer_ok(headers.get("authorization"), self.api_key):
                given = "a wrong" if headers.get("authorization") else "no"
                await _send_error(
                    send,
                    Unauthorized(
                        f"{given} API key: send `Authorization: Bearer <key>` with the key the "
                        "server was started with (GENREC_API_KEY)",
                        code="invalid_api_key",
                    ),
                )
                return
        too_large = BodyTooLarge(
            f"the request body is larger than {self.max_body} bytes (GENREC_MAX_BODY_BYTES)",
            code="request_too_large",
        )
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await _send_error(send, too_large)
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        # Read the body here, counting what actually arrives, then replay it to the app.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                # The client left before sending its body: nothing to answer.
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _send_error(send, too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class InFlightLimiter:
    """At most `limit` recommendations at once; the next one is a 429 at once, not a queue,
    so clients back off (Retry-After) instead of piling up behind a slow engine."""

    def __init__(self, limit: int, metrics: Metrics | None = None):
        self.limit = limit
        self.active = 0
        self._metrics = metrics

    def acquire(self) -> None:
        if self.active >= self.limit:
            raise RateLimited(
                f"{self.limit} requests are already being answered (GENREC_MAX_IN_FLIGHT); "
                "retry after a moment",
                code="too_many_requests",
            )
        self.active += 1
        if self._metrics:
            self._metrics.in_flight.set(self.active)

    def release(self) -> None:
        self.active = max(0, self.active - 1)
        if self._metrics:
            self._metrics.in_flight.set(self.active)

    @contextmanager
    def slot(self) -> Iterator[None]:
        self.acquire()
        try:
            yield
        finally:
            self.release()
