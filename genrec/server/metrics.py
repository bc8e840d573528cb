"""Prometheus metrics for one app, in its own CollectorRegistry (never the process-global one, so
two apps in one process, as in tests, do not collide).

The middleware records every request by route template, mode and outcome; a route sets the mode
and, where the status code does not tell, the outcome (a stream that ended in an error chunk, a
client that went away) on ``scope["state"]``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genrec.schema import STAGES, Recommendation

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)


def outcome_of(status: int) -> str:
    if status < 400:
        return "ok"
    return {
        401: "unauthorized",
        404: "not_found",
        413: "too_large",
        429: "rate_limited",
        499: "cancelled",
        503: "unavailable",
    }.get(status, "invalid" if status < 500 else "error")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["route", "mode", "outcome"]
        self.requests = Counter(
            "genrec_http_requests",
            "HTTP requests by route, mode and outcome",
            labels,
            registry=self.registry,
        )
        self.latency = Histogram(
            "genrec_http_request_duration_seconds",
            "HTTP request latency (a stream: until its last byte) by route, mode and outcome",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stages = Histogram(
            "genrec_stage_duration_seconds",
            "Per-stage time of successful recommendations",
            ["mode", "stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "genrec_tokens", "LM tokens", ["mode", "kind"], registry=self.registry
        )
        self.items = Counter(
            "genrec_recommended_items",
            "Items returned, by how they were grounded",
            ["mode", "grounded_by"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "genrec_in_flight_requests", "Recommendations being computed", registry=self.registry
        )
        self.ready = Gauge(
            "genrec_ready", "1 once the engine and the catalog are ready", registry=self.registry
        )

    def observe_result(self, result: Recommendation) -> None:
        t = result.timings
        mode = result.mode
        for stage in STAGES:
            self.stages.labels(mode, stage).observe(getattr(t, f"{stage}_ms") / 1000.0)
        self.tokens.labels(mode, "prompt").inc(result.usage.prompt_tokens)
        self.tokens.labels(mode, "completion").inc(result.usage.completion_tokens)
        for item in result.items:
            self.items.labels(mode, item.grounded_by).inc()

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts and times every HTTP request (including the ones the guard turns away)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, known_paths: Callable[[], set[str]]):
        self.app = app
        self.metrics = metrics
        self.known_paths = known_paths  # label requests turned away before routing by their path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except BaseException:
            status = 499 if _cancelled(scope) else 500
            raise
        finally:
            state: dict[str, Any] = scope.get("state") or {}
            route = scope.get("route")
            label = getattr(route, "path", None)
            if label is None:
                label = scope["path"] if scope["path"] in self.known_paths() else "unmatched"
            outcome = state.get("genrec_outcome") or outcome_of(status)
            mode = state.get("genrec_mode") or "none"
            elapsed = time.perf_counter() - start
            self.metrics.requests.labels(label, mode, outcome).inc()
            self.metrics.latency.labels(label, mode, outcome).observe(elapsed)


def _cancelled(scope: Scope) -> bool:
    return (scope.get("state") or {}).get("genrec_outcome") == "cancelled"
