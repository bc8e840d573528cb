"""A remote engine: an OpenAI-compatible vLLM server
(``python -m vllm.entrypoints.openai.api_server``).

genrec renders the prompt itself (same tokenizer and chat template as in process) and sends the
string to ``/v1/completions`` with ``add_special_tokens: false``, so both engines see the same
tokens. Constraints use vLLM's request extensions: ``structured_outputs`` ({choice|json|regex}),
``allowed_token_ids``, ``logprobs``, ``return_tokens_as_token_ids``. Never the ``guided_*`` fields
that vLLM 0.12 removed: a current server ignores them silently and returns unconstrained text.
Whatever comes back is re-validated by the caller (labels must be allowed ids; titles are
grounded), so a server that ignores a constraint cannot produce an unknown item.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from genrec.engines import adapters, base
from genrec.engines.base import EngineRequest, EngineResult, Owned
from genrec.errors import ConfigError, EngineError, PromptTooLong
from genrec.settings import Settings


class RemoteEngine(Owned):
    connect_wait_s = 10.0  # how long start() waits for a server that is still coming up

    def __init__(self, settings: Settings, url: str | None = None) -> None:
        base = (url or settings.engine_url or "").rstrip("/")
        if not base:
            raise ConfigError("RemoteEngine needs GENREC_ENGINE_URL (e.g. http://127.0.0.1:8001)")
        self.base_url = base.removesuffix("/v1")
        self._settings = settings
        self._timeout = settings.engine_timeout_s
        self._headers = (
            {"Authorization": f"Bearer {settings.engine_api_key}"}
            if settings.engine_api_key
            else {}
        )
        self.model_name = settings.model or ""  # replaced by the served model id at start()
        self._served = ""
        self.max_model_len = settings.max_model_len
        self.max_logprobs = settings.max_logprobs  # the server's --max-logprobs (default 20)
        self._client: httpx.AsyncClient | None = None
        self._healthy = False
        self._prompt_lengths: dict[str, int] = {}  # prompt -> token count (likelihood scoring)

    @property
    def healthy(self) -> bool:
        """Started and not shut down. A failed call does not latch this: the server is another
        process, so the next request simply tries again (and fails as a retryable EngineError
        while the server is down)."""
        return self._client is not None and self._healthy

    async def start(self) -> None:
        if self._client is not None:
            return
        self._client = httpx.AsyncClient(
            base_url=self.base_url, headers=self._headers, timeout=self._timeout
        )
        try:
            await self._connect()
        except BaseException:
            # Any failure (unreachable, refused, no model, cancelled) closes the client, so
            # nothing leaks and a later start() tries again instead of returning early.
            await self.shutdown()
            raise
        self._healthy = True

    async def _connect(self) -> None:
        deadline = time.monotonic() + self.connect_wait_s
        while True:
            try:
                models = await self._call("GET", "/v1/models")
                break
            except EngineError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
        cards = models.get("data") or []
        if not cards:
            raise EngineError(f"the engine at {self.base_url} serves no model")
        card = cards[0]
        self._served = card["id"]
        if self._settings.model is None or not self.model_name:
            self.model_name = _display(self._served)
        self.max_model_len = int(card.get("max_model_len") or self.max_model_len)

    async def shutdown(self) -> None:
        client, self._client = self._client, None
        self._healthy = False
        if client is not None:
            await client.aclose()

    async def complete(self, request: EngineRequest) -> EngineResult:
        c = request.constraint
        if isinstance(c, base.Continuation):
            return await self._score(request)
        body = adapters.openai_completion(request, self.max_logprobs)
        data = await self._complete(body)
        first = data["choices"][0]
        usage = data.get("usage") or {}
        # Re-validated there: only the labels we allowed, only real numbers.
        labels = adapters.openai_labels(request, first) if isinstance(c, base.Labels) else {}
        return EngineResult(
            text=first.get("text") or "",
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            finish_reason=first.get("finish_reason"),
            # reported when the server runs with --enable-prompt-tokens-details
            cached_tokens=int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0),
            label_logprobs=labels,
        )

    async def _score(self, request: EngineRequest) -> EngineResult:
        """The log-probability of each token of the Continuation's text after the prompt: the
        server's prompt log-probabilities of the joined string, from the prompt's own token count
        on (which the server's /tokenize gives once per distinct prompt: all candidates share
        one)."""
        prompt = request.prompt
        n_prompt = self._prompt_lengths.get(prompt)
        if n_prompt is None:
            counted = await self._call(
                "POST",
                "/tokenize",
                json={"model": self._served, "prompt": prompt, "add_special_tokens": False},
            )
            n_prompt = int(counted.get("count") or len(counted.get("tokens") or ()))
            if len(self._prompt_lengths) >= 256:
                self._prompt_lengths.pop(next(iter(self._prompt_lengths)))
            self._prompt_lengths[prompt] = n_prompt
        data = await self._complete(adapters.openai_completion(request, self.max_logprobs))
        first = data["choices"][0]
        ids = first.get("prompt_token_ids") or []
        entries = first.get("prompt_logprobs") or []
        try:
            logprobs = tuple(
                float(entries[pos][str(ids[pos])]["logprob"]) for pos in range(n_prompt, len(ids))
            )
        except (IndexError, KeyError, TypeError, ValueError):
            logprobs = ()
        if not logprobs or len(entries) != len(ids):
            raise EngineError(
                f"the engine at {self.base_url} returned no prompt log-probabilities for the "
                "scored text (a vLLM server new enough for prompt_logprobs and return_token_ids?)"
            )
        return EngineResult.scored(len(ids), logprobs)

    async def _complete(self, body: dict[str, Any]) -> dict[str, Any]:
        data = await self._call("POST", "/v1/completions", json={"model": self._served, **body})
        if not data.get("choices"):
            raise EngineError(f"the engine at {self.base_url} returned no choices")
        return data

    async def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        if self._client is None:
            raise EngineError("the remote engine is not started")
        try:
            resp = await self._client.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise EngineError(
                f"the engine at {self.base_url} did not answer within {self._timeout:.0f} s"
            ) from None
        except httpx.HTTPError as exc:
            raise EngineError(f"cannot reach the engine at {self.base_url}: {exc}") from exc
        if resp.status_code >= 500:
            raise EngineError(f"the engine at {self.base_url} failed: {_message(resp)}")
        if resp.status_code in (401, 403, 404):
            raise ConfigError(
                f"the engine at {self.base_url} refused {path} ({resp.status_code}): "
                f"{_message(resp)}; check GENREC_ENGINE_URL, GENREC_ENGINE_API_KEY and the model"
            )
        if resp.status_code >= 400:
            msg = _message(resp)
            if "context length" in msg or "maximum context" in msg or "too long" in msg:
                raise PromptTooLong(f"the engine rejected the prompt: {msg}", param="messages")
            # genrec validated the request and built this engine call itself, so a rejection
            # is a genrec/engine mismatch (e.g. the server's --max-logprobs is below
            # GENREC_MAX_LOGPROBS), not the client's fault: a 503 naming the cause.
            raise EngineError(
                f"the engine at {self.base_url} rejected a request genrec built "
                f"({resp.status_code}): {msg}; check that the server's settings match genrec's "
                "(e.g. --max-logprobs >= GENREC_MAX_LOGPROBS, --max-model-len)",
                code="engine_rejected",
            )
        try:
            return resp.json()
        except ValueError as exc:
            raise EngineError(f"the engine at {self.base_url} sent a non-JSON answer") from exc


def _message(resp: httpx.Response) -> str:
    try:
        err = resp.json()
        if isinstance(err, dict):
            inner = err.get("error", err)
            if isinstance(inner, dict):
                return str(inner.get("message") or inner)
            return str(err.get("message") or inner)
    except ValueError:
        pass
    return resp.text[:500]


def _display(served: str) -> str:
    # A server started with --model /path/to/Folder serves the id "/path/to/Folder".
    return served.rstrip("/").rsplit("/", 1)[-1] or served
