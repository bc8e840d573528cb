"""Bringing the recommender up behind a server that already answers.

The app starts listening at once; a background task ensures the default catalog is ingested and
starts the Recommender (vLLM takes tens of seconds), so /health can say 503 while it loads. The
heavy modules (vLLM, torch) are imported in a worker thread to keep the event loop answering.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import anyio

from genrec.engines import engine_runtime
from genrec.errors import EngineError, GenrecError
from genrec.settings import Settings

if TYPE_CHECKING:
    from genrec.events import EventStore
    from genrec.index import CatalogIndex
    from genrec.recommender import Recommender

log = logging.getLogger("genrec.server")

STOP_GRACE_S = 300.0  # at most how long a stop waits for a starting engine

Stage = Literal["starting", "catalog", "engine", "ready", "failed", "stopping"]


class Service:
    """The recommender and how far its start-up has got."""

    def __init__(
        self,
        settings: Settings,
        *,
        recommender: Recommender | None = None,
        on_fatal: Callable[[BaseException], None] | None = None,
    ):
        self.settings = settings
        self.stage: Stage = "ready" if recommender is not None else "starting"
        self.error: str | None = None
        self.recommender = recommender
        self.owned = recommender is None  # only what it started is shut down here
        self.started_at = time.time()
        self.ready_after_s: float | None = None
        self._on_fatal = on_fatal
        self._task: asyncio.Task | None = None
        self._starting: Recommender | None = None  # between Recommender() and ready
        # The catalog and the event store serve /v1/events as soon as the catalog is open,
        # while the LM engine is still starting.
        self.index: CatalogIndex | None = None
        self.events: EventStore | None = None

    # -- state --------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.stage == "ready" and self.recommender is not None and self.recommender.ready

    def require(self) -> Recommender:
        """The recommender, or a 503 saying why there is none."""
        if self.ready:
            assert self.recommender is not None
            return self.recommender
        if self.stage == "ready":
            raise EngineError(
                "the LM engine is not available (it stopped or died); see the server log",
                code="engine_unavailable",
            )
        if self.stage == "failed":
            raise EngineError(f"genrec failed to start: {self.error}", code="startup_failed")
        raise EngineError(
            f"genrec is still starting ({self.stage}); retry when GET /health says ok",
            code="not_ready",
        )

    def require_events(self) -> tuple[EventStore, CatalogIndex]:
        """The event store and the catalog, or a 503 saying why not yet."""
        rec = self.recommender
        if self.events is None and rec is not None:  # a recommender given, started or not
            try:
                self.index, self.events = rec.index, rec.events
            except EngineError:
                pass
        if self.events is not None and self.index is not None:
            return self.events, self.index
        if self.stage == "failed":
            raise EngineError(f"genrec failed to start: {self.error}", code="startup_failed")
        raise EngineError(
            f"genrec is still starting ({self.stage}); retry in a moment", code="not_ready"
        )

    def health(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "status": "ok" if self.ready else self._not_ok(),
            "stage": self.stage,
        }
        if self.error:
            doc["error"] = self.error
        rec = self.recommender
        if self.ready and rec is not None:
            doc["model"] = rec.model_name
            doc["collection"] = rec.index.name
            doc["retriever"] = rec.retrievers.describe()
            doc["bundle"] = _public(rec.bundle_status())
            doc["replica"] = {"host": socket.gethostname(), "pid": os.getpid()}
            doc["ready_after_s"] = self.ready_after_s
            doc["engine"] = engine_runtime(rec.engine)
        return doc

    def _not_ok(self) -> str:
        if self.stage in ("failed", "stopping"):
            return self.stage
        if self.stage == "ready":
            return "unhealthy"
        return "loading"

    # -- start and stop -----------------------------------------------------------------------

    def start_background(self) -> None:
        if self.recommender is None and self._task is None:
            self._task = asyncio.create_task(self._start(), name="genrec-start")

    async def _start(self) -> None:
        try:
            self.stage = "catalog"
            ingest = await anyio.to_thread.run_sync(importlib.import_module, "genrec.ingest")
            index = await anyio.to_thread.run_sync(
                lambda: ingest.open_catalog(self.settings, progress=False)
            )
            events = await anyio.to_thread.run_sync(importlib.import_module, "genrec.events")
            self.events = events.open_event_store(self.settings)
            self.index = index
            self.stage = "retrievers"
            default = await anyio.to_thread.run_sync(
                importlib.import_module, "genrec.training.default"
            )
            await anyio.to_thread.run_sync(
                lambda: default.ensure_default_retrievers(self.settings, index, notice=log.info)
            )
            self.stage = "engine"
            module = await anyio.to_thread.run_sync(importlib.import_module, "genrec.recommender")
            rec = self._starting = module.Recommender(
                self.settings, index=index, events=self.events
            )
            self.recommender = await rec.__aenter__()
            self._starting = None
            self.ready_after_s = round(time.time() - self.started_at, 1)
            if self.stage == "stopping":  # stop() is waiting to shut it down
                return
            self.stage = "ready"
            log.info("genrec is ready (%.1f s): model %s", self.ready_after_s, rec.model_name)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.stage = "failed"
            if isinstance(exc, GenrecError):  # a known problem: its message says what to do
                self.error = exc.message
                log.error("genrec failed to start: %s", exc.message)
            else:
                # /health and 503 bodies are unauthenticated: no exception text (paths,
                # internals) there; the log has the traceback.
                self.error = "an unexpected error; see the server log"
                log.exception("genrec failed to start")
            if self._on_fatal is not None:
                self._on_fatal(exc)

    async def stop(self) -> None:
        starting_engine = self.stage == "engine"
        self.stage = "stopping" if self.stage != "failed" else self.stage
        if starting_engine and self._task is not None and not self._task.done():
            # vLLM builds its engine (and a child process) in a worker thread that cancelling
            # cannot stop: let it finish, then shut it down, rather than orphan the child.
            log.warning("waiting for the LM engine to finish starting, to stop it cleanly")
            await asyncio.wait({self._task}, timeout=STOP_GRACE_S)
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self._starting is not None:  # cancelled half-way: stop what may have started
            rec, self._starting = self._starting, None
            try:
                await rec.__aexit__(None, None, None)
            except Exception:
                log.exception("stopping a half-started recommender failed")
        if self.owned and self.recommender is not None:
            rec, self.recommender = self.recommender, None
            await rec.__aexit__(None, None, None)
        if self.owned and self.events is not None:
            store, self.events = self.events, None
            await anyio.to_thread.run_sync(store.close)


def _public(status: dict[str, Any] | None) -> dict[str, Any] | None:
    """The bundle status without the fault's text (paths): /health is unauthenticated."""
    if status is None or status.get("error") is None:
        return status
    return {**status, "error": "the last reload check failed; see the server log"}
