"""`genrec serve`: the OpenAI-compatible HTTP server (uvicorn)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from genrec.cli.common import ConfigOption, handles_errors, load_settings, print_json


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command()
    @handles_errors
    def serve(
        host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
        port: int = typer.Option(8000, min=0, max=65535, help="TCP port."),
        log_level: str = typer.Option("info", help="uvicorn and genrec log level."),
        config: Path | None = ConfigOption,
    ) -> None:
        """Serve /v1/chat/completions, /v1/models, /v1/recommendations, /health and /metrics.

        The server answers at once; the catalog (ingested if missing) and the LM engine load in
        the background, and /health says 503 until both are ready. GENREC_API_KEY protects /v1.
        """
        import uvicorn

        from genrec.server import create_app

        settings = load_settings(config)
        logging.basicConfig(
            level=log_level.upper(), stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
        )
        failed: list[BaseException] = []
        server: uvicorn.Server | None = None

        def on_fatal(exc: BaseException) -> None:
            # Start-up failed (no catalog, no model...): stop, and exit non-zero below.
            failed.append(exc)
            if server is not None:
                server.should_exit = True

        if not settings.api_key and host not in ("127.0.0.1", "localhost", "::1"):
            logging.getLogger("genrec.server").warning(
                "serving on %s without an API key: anyone who can reach it can use it "
                "(set GENREC_API_KEY)",
                host,
            )
        app = create_app(settings, on_fatal=on_fatal)
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_level=log_level.lower(),
                timeout_graceful_shutdown=10,
            )
        )
        typer.echo(f"genrec: serving on http://{host}:{port} (loading in the background)", err=True)
        server.run()
        if failed:
            exc = failed[0]
            typer.echo(f"error: genrec failed to start: {getattr(exc, 'message', exc)}", err=True)
            raise typer.Exit(1)

    @bench.command("serve")
    @handles_errors
    def bench_serve(
        url: str = typer.Option("http://127.0.0.1:8000", help="A running `genrec serve`."),
        model: str = typer.Option("genrec", help="The profile to ask (GET /v1/models)."),
        requests: int = typer.Option(32, min=1, help="Requests to time (after one warm-up)."),
        concurrency: int = typer.Option(1, min=1, help="Requests in flight at once."),
        k: int = typer.Option(10, min=1, max=100, help="Items per answer."),
        stream: bool = typer.Option(False, help="Ask for SSE streams."),
        config: Path | None = ConfigOption,
    ) -> None:
        """Chat-completion latency and throughput of a running server, as JSON on stdout."""
        import asyncio

        from genrec.bench.serve import run_bench

        settings = load_settings(config)
        doc = asyncio.run(
            run_bench(
                url,
                model=model,
                requests=requests,
                concurrency=concurrency,
                k=k,
                stream=stream,
                api_key=settings.api_key,
            )
        )
        print_json(doc)
