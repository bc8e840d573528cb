"""`genrec bench events`: what the event loop costs.

1. ``events`` synthetic events (``users`` users, items drawn from the catalog with a popularity
   skew, 70 % views, 15 % clicks, 10 % purchases, 5 % ratings) are bulk-loaded into a fresh store;
2. ``batches`` batches of 100 events go through :func:`genrec.events.record_events`, the path of
   POST /v1/events (validation, catalog check, one committed transaction each): events/s;
3. ``lookups`` user-state reads of random users (the latest ``settings.user_history`` items and
   what they bought or rated): p50/p99;
4. ``requests`` recommendations with ``user_id``, interleaved with the same requests carrying the
   same history and exclusions explicitly: the p50 difference is what the lookup adds.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from genrec.events.factory import open_event_store
from genrec.events.model import StoredEvent
from genrec.events.recording import record_events
from genrec.settings import Settings
from genrec.stats import rounded_percentile

TYPES = ("view", "click", "purchase", "rate")
TYPE_WEIGHTS = (70, 15, 10, 5)


def synthetic(ids: list[str], *, events: int, users: int, seed: int = 0) -> Iterator[StoredEvent]:
    rng = random.Random(seed)
    weights = [1.0 / (r + 10) for r in range(len(ids))]  # a popularity skew
    per_user, extra = divmod(events, users)
    t0 = time.time() - 365 * 86_400
    for u in range(users):
        n = per_user + (1 if u < extra else 0)
        items = rng.choices(ids, weights=weights, k=n)
        kinds = rng.choices(TYPES, weights=TYPE_WEIGHTS, k=n)
        for j, (item, kind) in enumerate(zip(items, kinds, strict=True)):
            value = float(rng.randint(1, 5)) if kind == "rate" else None
            yield StoredEvent(f"bench-{u}", item, kind, t0 + u + j * 3600.0, value)


def _ms(values: list[float]) -> dict[str, float]:
    return {
        "p50": rounded_percentile(values, 50, 3),
        "p99": rounded_percentile(values, 99, 3),
        "mean": round(statistics.fmean(values), 3),
    }


async def run_bench(
    settings: Settings,
    *,
    events: int,
    users: int,
    batches: int,
    lookups: int,
    requests: int,
    url: str | None,
    say: Callable[[str], None],
) -> dict[str, Any]:
    from genrec.ingest import open_catalog

    index = open_catalog(settings, notice=say)
    ids = sorted(index.ids())
    rng = random.Random(1)
    with tempfile.TemporaryDirectory(prefix="genrec-bench-events-") as tmp:
        where = url or f"sqlite:///{tmp}/events.sqlite3"
        bench_settings = settings.model_copy(update={"events_url": where})
        store = open_event_store(bench_settings)
        doc: dict[str, Any] = {"store": store.backend, "location": store.location}
        try:
            say(f"loading {events:,} synthetic events for {users:,} users ...")
            t = time.perf_counter()
            loaded = store.bulk_load(index.name, synthetic(ids, events=events, users=users))
            doc["stored_events"] = store.count(index.name)
            doc["bulk_load"] = {"events": loaded, "s": round(time.perf_counter() - t, 1)}

            say(f"ingesting {batches} batches of 100 through record_events ...")
            batch_ms: list[float] = []
            for _ in range(batches):
                batch = [
                    {
                        "user_id": f"bench-{rng.randrange(users)}",
                        "item_id": rng.choice(ids),
                        "type": rng.choice(TYPES[:3]),
                        "event_id": uuid.uuid4().hex,
                    }
                    for _ in range(100)
                ]
                t = time.perf_counter()
                result = record_events(store, index, batch)
                batch_ms.append((time.perf_counter() - t) * 1000)
                assert result.accepted == 100, result.as_dict()
            doc["ingest"] = {
                "batch_size": 100,
                "batches": batches,
                "events_per_s": round(100 * batches / (sum(batch_ms) / 1000), 1),
                "batch_ms": _ms(batch_ms),
            }

            say(f"timing {lookups} history lookups ...")
            n = settings.user_history
            lookup_ms: list[float] = []
            cpu_ms: list[float] = []  # this thread's CPU time: the wall time less waiting
            for _ in range(lookups):
                user = f"bench-{rng.randrange(users)}"
                t, c = time.perf_counter(), time.thread_time()
                store.user_state(index.name, user, n)
                cpu_ms.append((time.thread_time() - c) * 1000)
                lookup_ms.append((time.perf_counter() - t) * 1000)
            doc["lookup"] = {
                "history_items": n,
                "lookups": lookups,
                "ms": _ms(lookup_ms),
                "cpu_ms": _ms(cpu_ms),
            }
            if requests:
                doc["recommend"] = await _recommend(
                    bench_settings, index, store, users, requests, say
                )
        finally:
            store.close()
    doc["machine_note"] = "shared machine: compare numbers measured in one run only"
    return doc


async def _recommend(
    settings: Settings, index: Any, store: Any, users: int, requests: int, say: Callable
) -> dict[str, Any]:
    """The same request with user_id and with the stored history given explicitly."""
    from genrec.recommender import Recommender
    from genrec.schema import RecommendRequest

    rng = random.Random(2)
    say("starting the recommender ...")
    timings: dict[str, dict[str, list[float]]] = {
        "user_id": {"total": [], "retrieve": []},
        "explicit": {"total": [], "retrieve": []},
    }
    async with Recommender(settings, index=index, events=store) as rec:
        for i in range(requests + 2):  # two warm-up rounds
            user = f"bench-{rng.randrange(users)}"
            state = store.user_state(index.name, user, settings.user_history)
            explicit = RecommendRequest(
                history=list(state.history),
                exclude=sorted(state.consumed - set(state.history)),
            )
            by_user = RecommendRequest(user_id=user)
            pair = [("user_id", by_user), ("explicit", explicit)]
            if i % 2:
                pair.reverse()
            for name, req in pair:
                got = await rec.recommend(req)
                if i >= 2:
                    timings[name]["total"].append(got.timings.total_ms)
                    timings[name]["retrieve"].append(got.timings.retrieve_ms)
    out: dict[str, Any] = {"requests": requests, "mode": settings.mode}
    for name, t in timings.items():
        out[name] = {f"{stage}_ms": _ms(v) for stage, v in t.items()}
    out["extra_ms_p50"] = {
        stage: round(
            statistics.median(timings["user_id"][stage])
            - statistics.median(timings["explicit"][stage]),
            2,
        )
        for stage in ("total", "retrieve")
    }
    return out
