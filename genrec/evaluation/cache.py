"""An on-disk cache of engine outputs: `CachingEngine` wraps any Engine, speaking its protocol.

Keys are a hash of (engine identity, the whole EngineRequest), so a cached answer is reused only
for exactly the same question to exactly the same engine: the identity
(`genrec.engines.engine_identity`) is the resolved model and every engine setting that changes
outputs. A table of another layout (an older genrec) is simply not read: a new table is created.
The inner engine is started lazily, on the first miss: a rerun of an unchanged evaluation answers
everything from SQLite and never starts vLLM at all.

Sampling with temperature > 0 and no seed is not reproducible, so it is never cached.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import sqlite3
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from genrec.engines.base import Engine, EngineRequest, EngineResult

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    value TEXT NOT NULL,
    created REAL NOT NULL
)
"""

# Per-request hit/miss counters: the runner sets a fresh dict for each request's task, so
# concurrent requests are attributed correctly.
request_stats: contextvars.ContextVar[dict[str, int] | None] = contextvars.ContextVar(
    "genrec_eval_cache_stats", default=None
)


def _count(event: str) -> None:
    stats = request_stats.get()
    if stats is not None:
        stats[event] = stats.get(event, 0) + 1


class CachingEngine:
    """Engine protocol over an inner Engine plus a SQLite store at `directory/engine-cache.sqlite`.

    Attributes the inner engine has and this class does not (a tokenizer, say) are delegated, so
    it can stand in wherever the inner engine could.

    `identity` says which engine this is (pass `genrec.engines.engine_identity(settings)`);
    without it, only what the Engine protocol exposes (model name, context length, logprobs
    limit) tells engines apart. Ownership as for every engine: the inner engine is stopped at
    exit only if a cache miss started it.
    """

    def __init__(self, inner: Engine, directory: str | Path, identity: dict | str | None = None):
        self.inner = inner
        if identity is None:
            identity = {
                "model": inner.model_name,
                "max_model_len": inner.max_model_len,
                "max_logprobs": inner.max_logprobs,
            }
        self.identity = identity
        self.path = Path(directory) / "engine-cache.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        self._db.commit()
        # Reads on the event loop use their own connection: WAL lets them run beside a write
        # committing in a worker thread on `_db`.
        self._reader = sqlite3.connect(self.path, check_same_thread=False)
        self._start_lock = asyncio.Lock()
        self._write_lock = threading.Lock()  # one sqlite3 connection, shared by worker threads
        self._we_started = False
        self.hits = 0
        self.misses = 0
        self.inner_calls = 0

    # ---- protocol attributes ----
    @property
    def model_name(self) -> str:
        return self.inner.model_name

    @property
    def max_model_len(self) -> int:
        return self.inner.max_model_len

    @property
    def max_logprobs(self) -> int:
        return self.inner.max_logprobs

    @property
    def healthy(self) -> bool:
        # Ready to answer: from the cache always; a miss starts the inner engine on demand.
        return True

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes not defined here; `inner` is always set first in __init__.
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    async def start(self) -> None:
        """Nothing to do: the inner engine starts on the first cache miss."""

    async def shutdown(self) -> None:
        # Whoever starts an engine stops it: the inner engine only if a miss here started it.
        if self._we_started:
            self._we_started = False
            await self.inner.shutdown()

    async def __aenter__(self) -> CachingEngine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    def close(self) -> None:
        self._reader.close()
        self._db.close()

    async def _ensure_inner(self) -> None:
        if self.inner.healthy:
            return
        # This request waits for an engine start-up: its latency says nothing about serving.
        _count("engine_start")
        async with self._start_lock:
            if not self.inner.healthy:
                await self.inner.start()
                self._we_started = True

    # ---- storage ----
    def _key(self, request: EngineRequest) -> str:
        doc = {"model": self.identity, "request": request.key()}
        blob = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def _get(self, key: str) -> dict | None:
        row = self._reader.execute("SELECT value FROM answers WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def _put_sync(self, key: str, value: dict) -> None:
        with self._write_lock:
            self._db.execute(
                "INSERT OR REPLACE INTO answers (key, model, value, created) VALUES (?,?,?,?)",
                (key, self.inner.model_name, json.dumps(value), time.time()),
            )
            self._db.commit()

    async def _put(self, key: str, value: dict) -> None:
        # The commit (an fsync) runs off the event loop, so it does not stall other requests.
        await asyncio.to_thread(self._put_sync, key, value)

    def __len__(self) -> int:
        return self._reader.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    # ---- the protocol call ----
    async def complete(self, request: EngineRequest) -> EngineResult:
        key = self._key(request)
        if request.reproducible and (hit := self._get(key)) is not None:
            self.hits += 1
            _count("hits")
            # JSON object keys are strings; token ids are ints.
            hit["label_logprobs"] = {int(t): lp for t, lp in hit["label_logprobs"].items()}
            hit["token_logprobs"] = tuple(hit.get("token_logprobs") or ())
            return EngineResult(**hit)
        self.misses += 1
        _count("misses")
        await self._ensure_inner()
        self.inner_calls += 1
        out = await self.inner.complete(request)
        if request.reproducible:
            await self._put(key, asdict(out))
        return out
