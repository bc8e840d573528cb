"""`genrec bench recommend` and `genrec bench retrieve`: options in, genrec.bench's JSON out
(progress on stderr)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from genrec.cli.bench_scale import bench_scale_command
from genrec.cli.common import (
    ConfigOption,
    handles_errors,
    load_settings,
    print_json,
    stdout_to_stderr,
)
from genrec.cli.core import _settings, open_catalog


def register(app: typer.Typer, bench: typer.Typer) -> None:
    bench.command("recommend")(bench_recommend_command)
    bench.command("retrieve")(bench_retrieve_command)
    bench.command("scale")(bench_scale_command)


def _say(msg: str) -> None:
    typer.echo(msg, err=True)


@handles_errors
def bench_recommend_command(
    requests: int = typer.Option(16, "--requests", help="Timed requests per mode and concurrency."),
    modes: str = typer.Option(
        "rank,likelihood,generate,describe", "--modes", help="Comma-separated."
    ),
    concurrency: Annotated[
        list[int] | None, typer.Option("--concurrency", help="Repeatable; default 1 and 8.")
    ] = None,
    k: int = typer.Option(10, "--k"),
    candidates: int = typer.Option(20, "--candidates"),
    warmup: int = typer.Option(2, "--warmup", help="Untimed requests per mode first."),
    retriever: str | None = typer.Option(
        None, "--retriever", help="content | itemknn | ease | sasrec | hybrid (default: auto)."
    ),
    binding: Annotated[
        list[str] | None,
        typer.Option(
            "--binding",
            help="Thread binding(s) to run side by side, one engine each, in order (repeatable: "
            "auto, all, vllm, nobind or a CPU list); ratios are against the first. "
            "Default: GENREC_CPU_THREADS_BIND.",
        ),
    ] = None,
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--model",
            help="Model folder(s) to run side by side (repeatable; e.g. a bf16 and an int8 "
            "checkpoint of one model), each with every --binding. Default: GENREC_MODEL.",
        ),
    ] = None,
    followup: bool = typer.Option(
        True,
        "--followup/--no-followup",
        help="Also time rank as a second turn of each user's conversation (prefix-cache hits).",
    ),
    gemm_seconds: float = typer.Option(
        1.0, "--gemm-seconds", help="Time for the GEMM peak measurement per binding."
    ),
    config: Path | None = ConfigOption,
) -> None:
    """Latency p50/p95 per mode and per stage, at concurrency 1 and 8, on the embedded default
    (ML-100K, real user histories, 20 candidates, k=10), with a roofline for rank: FLOPs per
    request from the model's shape and prefix-cache hits, against a bf16 GEMM peak measured in
    the same run on the engine's thread count. Prints JSON."""
    from genrec.bench.recommend import run_recommend_bench
    from genrec.engines.hardware import check_threads_bind

    settings = _settings(config)
    for b in binding or [settings.cpu_threads_bind]:
        try:
            check_threads_bind(b)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--binding") from None
    with stdout_to_stderr():
        index = open_catalog(settings)
        doc = asyncio.run(
            run_recommend_bench(
                settings,
                index,
                requests=requests,
                modes=[m.strip() for m in modes.split(",") if m.strip()],
                levels=concurrency or [1, 8],
                k=k,
                candidates=candidates,
                warmup=warmup,
                retriever=retriever,
                bindings=binding or [],
                models=models or [],
                followup=followup,
                gemm_seconds=gemm_seconds,
                say=_say,
            )
        )
    print_json(doc)


@handles_errors
def bench_retrieve_command(
    requests: int = typer.Option(200, "--requests", help="Timed requests per retriever."),
    k: int = typer.Option(20, "--k", help="Candidates per request."),
    length: int = typer.Option(50, "--length", help="History items per request."),
    config: Path | None = ConfigOption,
) -> None:
    """Retrieval latency p50/p99 of every retriever the default collection serves (no LM), on
    real ML-100K user histories. Prints JSON."""
    from genrec.bench.retrieve import run_retrieve_bench

    settings = load_settings(config)
    index = open_catalog(settings)
    print_json(run_retrieve_bench(settings, index, requests=requests, k=k, length=length, say=_say))
