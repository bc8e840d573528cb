"""genrec's one exception hierarchy.

Every error knows the HTTP status it maps to, whether retrying can help, and (for bad input)
which field was wrong, so the CLI, the server and the evaluation runner report it the same way::

    GenrecError                       500  base class
    ├── InvalidRequest                400  a request field is wrong (``param`` names it)
    │   └── PromptTooLong             400  the rendered prompt exceeds the model's context
    ├── Unauthorized                  401  a missing or wrong API key
    ├── NotFound                      404  unknown model profile, template, item
    ├── BodyTooLarge                  413  a request body over the configured limit
    ├── CatalogError                  400  a catalog source cannot be read or is empty
    ├── CatalogBusy                   503  another process is writing the embedded catalog, or has
    │                                      it open while this one wants to write (retryable)
    ├── ConfigError                   500  settings that cannot work
    ├── RateLimited                   429  the in-flight limit is reached (retryable)
    └── EngineError                   503  the LM engine failed, is not ready or died (retryable)
"""

from __future__ import annotations


class GenrecError(Exception):
    status_code: int = 500
    retryable: bool = False
    type: str = "server_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code

    def to_openai(self) -> dict:
        """The error body OpenAI clients expect."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(GenrecError):
    status_code = 400
    type = "invalid_request_error"


class PromptTooLong(InvalidRequest):
    pass


class Unauthorized(GenrecError):
    status_code = 401
    type = "invalid_request_error"


class BodyTooLarge(GenrecError):
    status_code = 413
    type = "invalid_request_error"


class NotFound(GenrecError):
    status_code = 404
    type = "invalid_request_error"


class CatalogError(GenrecError):
    status_code = 400
    type = "invalid_request_error"


class CatalogBusy(GenrecError):
    status_code = 503
    retryable = True
    type = "server_error"


class ConfigError(GenrecError):
    status_code = 500
    type = "server_error"


class RateLimited(GenrecError):
    status_code = 429
    retryable = True
    type = "rate_limit_error"


class EngineError(GenrecError):
    status_code = 503
    retryable = True
    type = "server_error"
