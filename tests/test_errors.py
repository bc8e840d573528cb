"""genrec's errors over HTTP: one table at the server's edge, read along each class's MRO."""

from __future__ import annotations

import pytest

import genrec.errors as errors
from genrec.server.errors import WIRE, http_status, openai_error, wire


@pytest.mark.parametrize(
    ("cls", "status", "kind"),
    [
        (errors.GenrecError, 500, "server_error"),
        (errors.InvalidRequest, 400, "invalid_request_error"),
        (errors.PromptTooLong, 400, "invalid_request_error"),  # no entry: its parent's
        (errors.Unauthorized, 401, "invalid_request_error"),
        (errors.NotFound, 404, "invalid_request_error"),
        (errors.BodyTooLarge, 413, "invalid_request_error"),
        (errors.CatalogError, 400, "invalid_request_error"),
        (errors.CatalogBusy, 503, "server_error"),
        (errors.ConfigError, 500, "server_error"),
        (errors.RateLimited, 429, "rate_limit_error"),
        (errors.EngineError, 503, "server_error"),
        (errors.StoreUnavailable, 503, "server_error"),
    ],
)
def test_each_error_has_its_status_and_openai_type(cls, status, kind) -> None:
    assert (http_status(cls), wire(cls("x")).type) == (status, kind)


def test_a_subclass_outside_the_table_takes_its_nearest_ancestors_entry() -> None:
    class Stale(errors.EngineError):
        pass

    assert Stale not in WIRE and wire(Stale("gone")) == WIRE[errors.EngineError]
    assert wire(Stale("gone")).headers == {"Retry-After": "5"}


def test_the_openai_body_carries_message_param_and_code() -> None:
    exc = errors.InvalidRequest("k: must be at least 1", param="k", code="bad_k")
    assert openai_error(exc) == {
        "error": {
            "message": "k: must be at least 1",
            "type": "invalid_request_error",
            "param": "k",
            "code": "bad_k",
        }
    }


def test_domain_errors_know_nothing_of_http() -> None:
    assert not hasattr(errors.InvalidRequest("x"), "status_code")
    assert not hasattr(errors.InvalidRequest, "to_openai")
    assert errors.RateLimited.retryable and not errors.InvalidRequest.retryable
