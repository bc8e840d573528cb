"""genrec's one exception hierarchy.

Every error knows whether retrying can help (``retryable``) and, for bad input, which field was
wrong (``param``) and a machine-readable ``code``, so the CLI, the server and the evaluation
runner report it the same way. What an error is over HTTP (its status and OpenAI error type) is
the server's business: one table in genrec/server/errors.py. ::

    GenrecError                   base class
    ├── InvalidRequest            a request field is wrong (``param`` names it)
    │   └── PromptTooLong         the rendered prompt exceeds the model's context
    ├── Unauthorized              a missing or wrong API key
    ├── NotFound                  unknown model profile, template, item
    ├── BodyTooLarge              a request body over the configured limit
    ├── CatalogError              a catalog source cannot be read or is empty
    ├── CatalogBusy               another process is writing the embedded catalog, or has it open
    │                             while this one wants to write (retryable)
    ├── ConfigError               settings that cannot work
    ├── RateLimited               the in-flight limit is reached (retryable)
    ├── EngineError               the LM engine failed, is not ready or died (retryable)
    └── StoreUnavailable          the event store cannot be reached or failed (retryable)
"""

from __future__ import annotations

import importlib
from types import ModuleType


class GenrecError(Exception):
    retryable: bool = False

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class InvalidRequest(GenrecError):
    pass


class PromptTooLong(InvalidRequest):
    pass


class Unauthorized(GenrecError):
    pass


class NotFound(GenrecError):
    pass


class BodyTooLarge(GenrecError):
    pass


class CatalogError(GenrecError):
    pass


class CatalogBusy(GenrecError):
    retryable = True


class ConfigError(GenrecError):
    pass


class RateLimited(GenrecError):
    retryable = True


class EngineError(GenrecError):
    retryable = True


class StoreUnavailable(GenrecError):
    retryable = True


def dependency(module: str, hint: str) -> ModuleType:
    """Import a dependency an installation may lack; when it does, a ConfigError that says what
    is missing and how to install it (``hint``), never an ImportError traceback."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(hint) from exc
