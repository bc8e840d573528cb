"""Every error the server sends is OpenAI's `{"error": {message, type, param, code}}`.

Bad input is a 400 naming the field (never FastAPI's 422); unexpected failures are a 500 whose
body says nothing about the internals (the log has the traceback). genrec's own errors know
nothing of HTTP: their status, OpenAI error type and headers come from one table here, `WIRE`,
read along the error class's MRO.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import genrec.errors as e
from genrec.errors import GenrecError, InvalidRequest

log = logging.getLogger("genrec.server")


class Wire(NamedTuple):
    """What an error is over HTTP."""

    status: int
    type: str  # OpenAI's error type
    headers: Mapping[str, str] = {}  # read only: shared by every error of the class


# The nearest entry along an error's MRO wins (PromptTooLong is an InvalidRequest: 400).
WIRE: dict[type[GenrecError], Wire] = {
    e.GenrecError: Wire(500, "server_error"),
    e.InvalidRequest: Wire(400, "invalid_request_error"),
    e.Unauthorized: Wire(401, "invalid_request_error", {"WWW-Authenticate": "Bearer"}),
    e.NotFound: Wire(404, "invalid_request_error"),
    e.BodyTooLarge: Wire(413, "invalid_request_error"),
    e.CatalogError: Wire(400, "invalid_request_error"),
    e.CatalogBusy: Wire(503, "server_error"),
    e.ConfigError: Wire(500, "server_error"),
    e.RateLimited: Wire(429, "rate_limit_error", {"Retry-After": "1"}),
    e.EngineError: Wire(503, "server_error", {"Retry-After": "5"}),
    e.StoreUnavailable: Wire(503, "server_error", {"Retry-After": "2"}),
}


def wire(exc: GenrecError | type[GenrecError]) -> Wire:
    cls = exc if isinstance(exc, type) else type(exc)
    return next(WIRE[c] for c in cls.__mro__ if c in WIRE)


def http_status(exc: GenrecError | type[GenrecError]) -> int:
    return wire(exc).status


def openai_error(exc: GenrecError) -> dict[str, Any]:
    """The error body OpenAI clients expect."""
    return {
        "error": {
            "message": exc.message,
            "type": wire(exc).type,
            "param": exc.param,
            "code": exc.code,
        }
    }


def error_response(exc: GenrecError) -> JSONResponse:
    w = wire(exc)
    return JSONResponse(openai_error(exc), status_code=w.status, headers=dict(w.headers))


def param_path(loc: Sequence[Any]) -> str | None:
    """("body", "messages", 0, "content") -> "messages[0].content"."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or None


def from_validation(errors: Sequence[dict[str, Any]]) -> InvalidRequest:
    """The first pydantic/FastAPI validation error as a 400 that names its field."""
    if not errors:
        return InvalidRequest("the request is invalid")
    # A union (content: str | list[part]) fails once per branch; of the first field's errors,
    # the branch whose value was wrong, not the one of the wrong type, says what to fix, and of
    # those the one that got furthest in (content[0].text, not content).
    field = _field(errors[0])
    err = min(
        (x for x in errors if _field(x) == field),
        key=lambda x: (str(x.get("type", "")).endswith("_type"), -len(x.get("loc", ()))),
    )
    loc = [p for p in err.get("loc", ()) if not _union_branch(p)]
    if loc and loc[0] in _LOCATIONS:
        loc = loc[1:]
    kind = err.get("type", "")
    if kind == "json_invalid":
        detail = (err.get("ctx") or {}).get("error", "")
        pos = f" at character {loc[0]}" if loc else ""
        return InvalidRequest(
            f"the body is not valid JSON ({detail}{pos})", param=None, code="invalid_json"
        )
    param = param_path(loc)
    msg = str(err.get("msg", "is invalid")).removeprefix("Value error, ")
    if kind == "extra_forbidden":
        msg = "unknown field; genrec takes OpenAI's chat fields and its own options"
    elif kind == "missing" and param is None:
        return InvalidRequest("the request needs a JSON object body", param=None)
    elif kind == "missing":
        msg = "is required"
    elif kind in ("model_type", "model_attributes_type", "dict_type") and param is None:
        return InvalidRequest("the body must be a JSON object", param=None)
    if param is None:
        return InvalidRequest(msg)
    return InvalidRequest(f"{param}: {msg}", param=param)


def _field(err: dict[str, Any]) -> object:
    """The top-level field an error is about: ("body", "messages", 0, ...) -> "messages"."""
    loc = list(err.get("loc", ()))
    if loc and loc[0] in _LOCATIONS:
        loc = loc[1:]
    return loc[0] if loc else None


_LOCATIONS = ("body", "query", "path", "header")  # where FastAPI found the value
_TYPE_NAMES = {"str", "int", "float", "bool", "list", "dict", "none", "any"}


def _union_branch(part: object) -> bool:
    """pydantic names union branches in `loc` ("str", "list[TextPart]"): not field names."""
    if not isinstance(part, str):
        return False
    return part in _TYPE_NAMES or "[" in part or part.startswith("function-")


def install(app: FastAPI) -> None:
    @app.exception_handler(GenrecError)
    async def _genrec(request: Request, exc: GenrecError) -> JSONResponse:
        if http_status(exc) >= 500 and not exc.retryable:
            log.error("request failed: %s", exc.message)
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(from_validation(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"no route {request.method} {request.url.path}; see GET /v1/models, "
            message += "POST /v1/chat/completions, POST /v1/recommendations, POST /v1/events"
        else:
            message = str(exc.detail)
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        body = {
            "error": {
                "message": "internal server error; the server log has the details",
                "type": "server_error",
                "param": None,
                "code": None,
            }
        }
        return JSONResponse(body, status_code=500)
