"""`genrec bench serve`: drive a running server with chat requests and report latency as JSON.

It measures what a client sees (HTTP round trip, plain or streamed), alongside the server's own
per-stage timings, so the two can be told apart.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Any

import httpx

from genrec.errors import GenrecError
from genrec.stats import rounded_percentile

QUERIES = [
    "a space adventure with robots",
    "a funny animated film for children",
    "a gritty crime thriller",
    "a romantic comedy in New York",
    "a western with a lone gunslinger",
    "a war drama",
    "a horror film set in a house",
    "a musical",
]


def _server_total(data: bytes, stream: bool) -> float:
    """The server's own total_ms: in the body, or on the stream's final content chunk."""
    if not stream:
        return json.loads(data)["genrec"]["timings"]["total_ms"]
    for line in data.decode().splitlines():
        if line.startswith("data: {") and '"genrec"' in line:
            return json.loads(line[6:])["genrec"]["timings"]["total_ms"]
    return 0.0


async def run_bench(
    url: str,
    *,
    model: str,
    requests: int,
    concurrency: int,
    k: int,
    stream: bool,
    api_key: str | None,
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    first_bytes: list[float] = []
    server_ms: list[float] = []
    statuses: dict[str, int] = {}

    async with httpx.AsyncClient(
        base_url=url.rstrip("/"), headers=headers, timeout=300,
        limits=httpx.Limits(max_connections=concurrency + 4),
    ) as http:  # fmt: skip

        async def one(i: int) -> None:
            body = {
                "model": model,
                "messages": [{"role": "user", "content": QUERIES[i % len(QUERIES)]}],
                "k": k,
                "stream": stream,
            }
            async with sem:
                start = time.perf_counter()
                data = b""
                async with http.stream("POST", "/v1/chat/completions", json=body) as resp:
                    first = None
                    async for piece in resp.aiter_bytes():
                        first = first or time.perf_counter()
                        data += piece
                    done = time.perf_counter()
                statuses[str(resp.status_code)] = statuses.get(str(resp.status_code), 0) + 1
                if resp.status_code == 200:
                    latencies.append((done - start) * 1000)
                    first_bytes.append(((first or done) - start) * 1000)
                    server_ms.append(_server_total(data, stream))

        try:
            await one(0)  # warm-up, not counted
        except httpx.HTTPError as exc:
            raise GenrecError(f"cannot reach a genrec server at {url}: {exc!r}") from None
        if statuses.get("200") != 1:
            raise GenrecError(f"the warm-up request to {url} failed: HTTP {list(statuses)}")
        latencies.clear(), first_bytes.clear(), server_ms.clear(), statuses.clear()
        began = time.perf_counter()
        await asyncio.gather(*[one(i) for i in range(requests)])
        wall = time.perf_counter() - began

    return {
        "url": url,
        "model": model,
        "stream": stream,
        "requests": requests,
        "concurrency": concurrency,
        "k": k,
        "statuses": statuses,
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(latencies) / wall, 2) if wall else 0.0,
        "latency_ms": {
            "p50": rounded_percentile(latencies, 50),
            "p95": rounded_percentile(latencies, 95),
            "mean": round(statistics.fmean(latencies), 1) if latencies else 0.0,
        },
        "first_byte_ms": {
            "p50": rounded_percentile(first_bytes, 50),
            "p95": rounded_percentile(first_bytes, 95),
        },
        "server_total_ms": {
            "p50": rounded_percentile(server_ms, 50),
            "p95": rounded_percentile(server_ms, 95),
        },
    }
