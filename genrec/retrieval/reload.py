"""Hot reload: a running process swaps in the bundle ``genrec train`` makes current.

Several ``genrec serve`` replicas share one ``GENREC_HOME``; each :class:`Reloader` polls its
collection's ``CURRENT`` (one small file read every ``settings.reload_interval_s``) and, when it
names another version, loads that bundle completely beside the serving one and only then
replaces the reference. A request reads :attr:`Reloader.retrievers` once at its start and keeps
that object, so it is served wholly by the old or wholly by the new bundle; the old one lives
until its last request ends.

Faults are logged and retried, never raised into a request: an unreadable shared folder, a
``CURRENT`` naming a folder without its manifest, a model file that cannot be read keep the
serving bundle, and the next attempts back off (up to ``MAX_BACKOFF_S``). ``CURRENT`` only ever
names a bundle renamed into place complete (genrec.training.artifacts), so a half-written
bundle is never loaded.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from genrec.errors import GenrecError
from genrec.index import CatalogIndex
from genrec.retrieval.registry import Retrievers, bundle_retrievers, load_retrievers
from genrec.settings import Settings
from genrec.training import artifacts

log = logging.getLogger("genrec.retrieval")

MAX_BACKOFF_S = 60.0  # the longest wait between attempts at a bundle that failed to load


class Reloader:
    """The serving retrievers of one collection, replaced whole when ``CURRENT`` moves."""

    def __init__(self, settings: Settings, index: CatalogIndex, retrievers: Retrievers) -> None:
        self.settings = settings
        self.index = index
        self.retrievers = retrievers  # replaced, never mutated: readers keep a consistent one
        self.loaded_at = time.time()
        self.checked_at: float | None = None
        self.reloads = 0
        self.error: str | None = None  # why the last check could not serve CURRENT
        self._failures = 0
        self._retry_at = 0.0
        self._lock = threading.Lock()  # one check at a time (the watcher, an explicit reload)

    @classmethod
    def load(cls, settings: Settings, index: CatalogIndex) -> Reloader:
        return cls(settings, index, load_retrievers(settings, index))

    @property
    def version(self) -> str | None:
        return self.retrievers.version

    def check(self, *, force: bool = False) -> bool:
        """Serve the bundle ``CURRENT`` names if it is another one; True when it swapped.
        Never raises: a fault is kept in :attr:`error`, logged once, and retried later."""
        with self._lock:
            now = time.time()
            if not force and now < self._retry_at:
                return False
            self.checked_at = now
            try:
                wanted = artifacts.current_version(self.settings, self.index.name)
            except OSError as exc:
                return self._failed(f"cannot read the bundle pointer ({exc})")
            serving = self.version
            if wanted == serving:
                self._ok()
                return False
            if wanted is None:  # CURRENT removed: nothing better to serve than what serves
                return self._failed("CURRENT is missing")
            try:
                bundle = artifacts.current(self.settings, self.index.name)
                fresh = bundle_retrievers(self.settings, self.index, bundle)
            except GenrecError as exc:
                return self._failed(f"bundle {wanted} cannot serve: {exc.message}")
            except Exception as exc:  # noqa: BLE001 - any unreadable file: keep serving, retry
                log.debug("loading bundle %s failed", wanted, exc_info=True)
                return self._failed(f"bundle {wanted} cannot be loaded ({exc!r})")
            self.retrievers = fresh
            self.loaded_at = time.time()
            self.reloads += 1
            self._ok()
            log.info(
                "collection %r: now serving bundle %s (was %s; default retriever %s)",
                self.index.name,
                fresh.version,
                serving,
                fresh.default,
            )
            return True

    async def watch(self, interval_s: float) -> None:
        """Check every ``interval_s`` until cancelled."""
        log.info(
            "collection %r: serving bundle %s; checking for a new one every %g s",
            self.index.name,
            self.version or "(none: content)",
            interval_s,
        )
        while True:
            await asyncio.sleep(interval_s)
            try:
                await asyncio.to_thread(self.check)
            except asyncio.CancelledError:
                raise
            except Exception:  # check() does not raise; this loop must outlive any surprise
                log.exception("the bundle watcher failed once; it keeps watching")

    def describe(self) -> dict[str, Any]:
        """For /health: which bundle serves, since when, and what the last check found."""
        return {
            "version": self.version,
            "loaded_at": round(self.loaded_at, 3),
            "checked_at": round(self.checked_at, 3) if self.checked_at else None,
            "reloads": self.reloads,
            "error": self.error,
        }

    def _ok(self) -> None:
        if self.error is not None:
            log.info("collection %r: bundle checks succeed again", self.index.name)
        self.error, self._failures, self._retry_at = None, 0, 0.0

    def _failed(self, why: str) -> bool:
        message = f"{why}; still serving bundle {self.version or '(content only)'}"
        if message != self.error:  # once per distinct fault, not once per poll
            log.warning("collection %r: %s", self.index.name, message)
        self.error = message
        self._failures += 1
        wait = min(MAX_BACKOFF_S, self.settings.reload_interval_s * 2 ** (self._failures - 1))
        self._retry_at = time.time() + wait
        return False
