"""The embedded engine: vLLM's ``AsyncLLM`` running in this process (its EngineCore in a child).

One engine per process, shared by all concurrent requests so vLLM batches them. vLLM starts its
EngineCore with ``spawn``: a script that builds this engine needs the ``if __name__ ==
"__main__":`` guard (we refuse to start from a spawned child, which is what a missing guard looks
like). vLLM logs to stdout by default; :func:`configure_vllm_env` points it at stderr so ``--json``
output stays clean, and must run before vLLM is first imported.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import multiprocessing
import os
import time
import uuid
from typing import Any

from genrec.engines import adapters
from genrec.engines.base import (
    PREFIX_BLOCK,
    Choice,
    Continuation,
    EngineRequest,
    EngineResult,
    Labels,
    Owned,
    Regex,
)
from genrec.engines.hardware import ThreadBinding, choose_binding, resolve_dtype
from genrec.errors import EngineError, PromptTooLong
from genrec.model_files import model_display_name, model_path
from genrec.settings import Settings

log = logging.getLogger("genrec.engine")

_GIB = 1 << 30
# A short prompt used to warm the engine: the first allowed_token_ids request and the first
# structured-output request each pay a few seconds of one-time set-up.
_WARM_PROMPT = "<|im_start|>user\nPick one letter.<|im_end|>\n<|im_start|>assistant\n"


def configure_vllm_env(settings: Settings) -> None:
    """Environment for vLLM, set before it is imported (its EngineCore child inherits it)."""
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # The CPU build reads the KV-cache bound (whole GiB) from here, overriding engine args.
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, math.ceil(settings.kv_cache_gib)))


def bind_threads(settings: Settings) -> ThreadBinding:
    """Choose where the model's threads run and tell vLLM, before each engine start (the
    EngineCore and its worker read the binding when they spawn)."""
    binding = choose_binding(settings.cpu_threads_bind)
    binding.apply()
    return binding


class InProcessEngine(Owned):
    """vLLM ``AsyncLLM`` behind the Engine protocol."""

    def __init__(self, settings: Settings, model: str | None = None) -> None:
        self._settings = settings
        self._model = model
        self.model_name = model_display_name(settings)
        self.max_model_len = settings.max_model_len
        self.max_logprobs = settings.max_logprobs
        self._timeout = settings.engine_timeout_s
        self._llm: Any = None
        self._tokenizer: Any = None
        self._ready = False
        self._lock = asyncio.Lock()
        self._vllm: dict[str, Any] = {}
        self._abandoned = False
        self.binding: ThreadBinding | None = None

    def runtime_info(self) -> dict[str, Any]:
        """How this engine runs (for /health and the bench): dtype and thread binding."""
        info: dict[str, Any] = {
            "engine": "in-process",
            "dtype": resolve_dtype(self._settings.dtype),
        }
        if self.binding is not None:
            info.update(self.binding.describe())
        return info

    @property
    def healthy(self) -> bool:
        return self._ready and self._llm is not None and not self._llm.errored

    async def start(self) -> None:
        async with self._lock:
            if self._llm is not None:
                return
            if multiprocessing.current_process().name != "MainProcess":
                raise EngineError(
                    "the in-process vLLM engine cannot start inside a spawned child process: "
                    'guard your script with `if __name__ == "__main__":`'
                )
            started = time.monotonic()
            model = self._model or await asyncio.to_thread(model_path, self._settings)
            configure_vllm_env(self._settings)
            self.binding = bind_threads(self._settings)
            log.info("model threads: %s", self.binding.describe())
            self._abandoned = False
            try:
                await asyncio.wait_for(asyncio.to_thread(self._build, model), self._startup_timeout)
            except TimeoutError:
                # The building thread cannot be interrupted: it shuts the engine down itself.
                self._abandoned = True
                raise EngineError(
                    f"the vLLM engine did not start within {self._startup_timeout:.0f} s "
                    "(raise GENREC_ENGINE_TIMEOUT_S on a busy machine)"
                ) from None
            except Exception as exc:
                raise EngineError(f"the vLLM engine failed to start for {model}: {exc}") from exc
            self._tokenizer = self._llm.tokenizer
            try:
                await self._warm_up()
            except BaseException:
                await self._close()
                raise
            self._ready = True
            log.info("in-process engine ready in %.1f s (%s)", time.monotonic() - started, model)

    @property
    def _startup_timeout(self) -> float:
        # Start-up imports vLLM, loads weights and warms up: on a busy 2-core machine that can
        # take minutes, so it gets five times one request's timeout (10 min by default).
        return 5 * self._timeout

    def _build(self, model: str) -> None:
        from vllm import SamplingParams
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.sampling_params import StructuredOutputsParams
        from vllm.v1.engine.async_llm import AsyncLLM

        self._vllm = {"SamplingParams": SamplingParams, "Structured": StructuredOutputsParams}
        args = AsyncEngineArgs(
            model=model,
            dtype=resolve_dtype(self._settings.dtype),
            max_model_len=self.max_model_len,
            enforce_eager=True,
            logprobs_mode="processed_logprobs",
            max_logprobs=self.max_logprobs,
            kv_cache_memory_bytes=int(self._settings.kv_cache_gib * _GIB),
            disable_log_stats=True,
            # Prefix caching reuses whole KV blocks. The CPU default (128 tokens) misses most of
            # a 300-token prompt; with 32 the static system text is reused across requests and,
            # in generate mode, each line's call re-reads all but the last few tokens.
            # Measured on 2 cores: rank p50 210 -> 167 ms, generate 1.03 -> 0.67 s.
            block_size=PREFIX_BLOCK,
        )
        llm = AsyncLLM.from_engine_args(args)
        if self._abandoned:  # start() gave up waiting
            llm.shutdown(20.0)
            llm.shutdown = _no_op
        else:
            self._llm = llm

    async def _warm_up(self) -> None:
        t0 = time.monotonic()
        ids = [self._tokenizer.encode(c, add_special_tokens=False)[0] for c in "ABC"]
        await self.complete(EngineRequest.labels(_WARM_PROMPT, ids))
        await self.complete(
            EngineRequest(_WARM_PROMPT, max_tokens=4, constraint=Choice(("A", "B")))
        )
        await self.complete(
            EngineRequest(_WARM_PROMPT, max_tokens=8, constraint=Regex("(A|B)(\n(A|B))?"))
        )
        await self.complete(EngineRequest.continuation(_WARM_PROMPT, "A"))
        log.info("engine warm-up took %.1f s", time.monotonic() - t0)

    async def shutdown(self) -> None:
        async with self._lock:
            await self._close()

    async def _close(self) -> None:
        self._ready = False
        llm, self._llm = self._llm, None
        if llm is None:
            return
        # Stop the output handler first: otherwise it sees the EngineCore go away and logs a
        # scary "EngineDeadError" traceback for a normal shutdown.
        handler = getattr(llm, "output_handler", None)
        if handler is not None and not handler.done():
            handler.cancel()
            await asyncio.gather(handler, return_exceptions=True)
        await asyncio.to_thread(llm.shutdown, 20.0)
        # AsyncLLM.__del__ calls shutdown() again, possibly at interpreter exit when vLLM's
        # module globals are gone (a TypeError on stderr): it has nothing left to do.
        llm.shutdown = _no_op
        del llm
        gc.collect()

    async def complete(self, request: EngineRequest) -> EngineResult:
        if isinstance(request.constraint, Continuation):
            return await self._score(request)
        kwargs = adapters.vllm_sampling(request, self.max_logprobs)
        if kwargs.get("structured_outputs") is not None:
            kwargs["structured_outputs"] = self._vllm["Structured"](**kwargs["structured_outputs"])
        out = await self._run(request.prompt, self._vllm["SamplingParams"](**kwargs))
        first = out.outputs[0]
        labels = isinstance(request.constraint, Labels)
        return EngineResult(
            text=first.text,
            prompt_tokens=len(out.prompt_token_ids or ()),
            completion_tokens=len(first.token_ids),
            finish_reason=first.finish_reason,
            cached_tokens=int(out.num_cached_tokens or 0),
            label_logprobs=adapters.vllm_labels(request, first.logprobs[0]) if labels else {},
        )

    async def _score(self, request: EngineRequest) -> EngineResult:
        """The log-probability of each token of the Continuation's text after the prompt.

        The shared prompt is read from the prefix cache (computed once for all candidates)
        unless the cache covered a text position (two candidates whose text starts alike may
        share a cached block): then the request runs again without it."""
        n_prompt = len(self._tokenizer.encode(request.prompt, add_special_tokens=False))
        for skip_cache in (False, True):
            kwargs = adapters.vllm_sampling(
                request, self.max_logprobs, skip_prefix_cache=skip_cache
            )
            out = await self._run(
                adapters.engine_prompt(request), self._vllm["SamplingParams"](**kwargs)
            )
            if (out.num_cached_tokens or 0) < n_prompt:
                break
        ids = list(out.prompt_token_ids or ())
        entries = out.prompt_logprobs or []
        if len(ids) <= n_prompt or len(entries) != len(ids):
            raise EngineError("the vLLM engine returned no log-probabilities for the scored text")
        logprobs = tuple(float(entries[pos][ids[pos]].logprob) for pos in range(n_prompt, len(ids)))
        return EngineResult.scored(len(ids), logprobs, int(out.num_cached_tokens or 0))

    async def _run(self, prompt: str, params: Any) -> Any:
        llm = self._llm
        if llm is None:
            raise EngineError("the vLLM engine is not running (start it first)")
        if llm.errored:
            raise EngineError("the vLLM engine has died; restart genrec (retry later)")
        ids = self._tokenizer.encode(prompt, add_special_tokens=False)
        if len(ids) + (params.max_tokens or 0) > self.max_model_len:
            raise PromptTooLong(
                f"the prompt has {len(ids)} tokens; with {params.max_tokens} to generate it "
                f"exceeds the model's context of {self.max_model_len}",
                param="messages",
            )
        from vllm.exceptions import VLLMClientError, VLLMError
        from vllm.inputs.engine import tokens_input
        from vllm.v1.engine.exceptions import EngineDeadError

        final = None
        try:
            async with asyncio.timeout(self._timeout):
                stream = llm.generate(
                    tokens_input(ids, prompt=prompt), params, request_id=uuid.uuid4().hex
                )
                async for final in stream:  # noqa: B007 - the last output is complete
                    pass
        except TimeoutError:
            raise EngineError(
                f"the vLLM engine did not answer within {self._timeout:.0f} s"
            ) from None
        except EngineDeadError as exc:
            raise EngineError("the vLLM engine has died; restart genrec (retry later)") from exc
        except VLLMClientError as exc:
            # genrec validated the request and built these parameters itself (prompt length is
            # checked above), so a rejection here is a genrec/engine mismatch, not a client 400.
            raise EngineError(
                f"the vLLM engine rejected a request genrec built: {exc}; check that the engine "
                "settings match genrec's (e.g. max_logprobs, max_model_len)",
                code="engine_rejected",
            ) from exc
        except VLLMError as exc:
            raise EngineError(f"the vLLM engine failed: {exc}") from exc
        if final is None or not final.outputs:
            raise EngineError("the vLLM engine returned no output")
        return final


def _no_op(*args: Any, **kwargs: Any) -> None:
    return None
