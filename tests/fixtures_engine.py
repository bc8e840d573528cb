"""Session fixtures for the generative core: ONE real in-process vLLM engine with the real default
model (SmolLM2-135M-Instruct, converted once into the shared model cache) for the whole test
session, inside a real Recommender over the catalog fixtures' ML-100K index.

Other areas use ``recommender`` (a started :class:`genrec.recommender.Recommender`); its
``engine``, ``index``, ``tokenizer`` and ``prompts`` are there for tests that need the parts.
The remote-engine and replica tests share ONE `vllm serve` (``shared_vllm``; ``.started()``
gives it running), started on first use.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from genrec.engines.hardware import resolve_dtype
from genrec.index import CatalogIndex
from genrec.model_files import default_model_dir
from genrec.recommender import Recommender
from genrec.settings import Settings
from tests.fixtures_catalog import free_port, stop_process


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def recommender(settings: Settings, ml100k_index: CatalogIndex) -> AsyncIterator[Recommender]:
    """A started Recommender (in-process engine, default model, ML-100K), shut down at the end."""
    async with Recommender(settings, index=ml100k_index) as rec:
        yield rec


def sharing(recommender: Recommender, **updates: object) -> Recommender:
    """Another Recommender with some settings changed, on the session's index, tokenizer and
    running engine (nothing new starts)."""
    return Recommender(
        recommender.settings.model_copy(update=updates),
        index=recommender.index,
        engine=recommender.engine,
        tokenizer=recommender.tokenizer,
    )


class SharedVLLM:
    """One real `vllm serve` for the session, started on first use and again if a test stopped
    it (the test that kills it runs last, in tests/test_replicas_processes.py)."""

    def __init__(self, settings: Settings, folder: Path) -> None:
        self.settings, self.folder = settings, folder
        self._running: contextlib.ExitStack | None = None
        self.url = ""
        self.proc: subprocess.Popen | None = None

    def started(self) -> SharedVLLM:
        if self.proc is None or self.proc.poll() is not None:
            self.stop()
            self._running = contextlib.ExitStack()
            self.url, self.proc = self._running.enter_context(
                run_vllm_server(self.settings, self.folder)
            )
        return self

    def stop(self) -> None:
        if self._running is not None:
            self._running.close()
            self._running = None


@pytest.fixture(scope="session")
def shared_vllm(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SharedVLLM]:
    server = SharedVLLM(settings, tmp_path_factory.mktemp("vllm-server"))
    try:
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def run_vllm_server(settings: Settings, folder: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """(URL, process) of a real vLLM OpenAI-compatible server with the default model, configured
    as the in-process engine is, on a free loopback port; stopped on exit. Its log is in
    ``folder``."""
    model = default_model_dir(settings)
    port = free_port()
    log_path = folder / "server.log"
    log = open(log_path, "wb")  # noqa: SIM115 - closed at exit
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(model),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--dtype",
            resolve_dtype("auto"),  # the in-process engine's dtype on this machine
            "--max-model-len",
            "2048",
            "--enforce-eager",
            "--logprobs-mode",
            "processed_logprobs",
            "--block-size",  # as the in-process engine: the same configuration
            "32",
            "--enable-prompt-tokens-details",  # prefix-cache hits in usage (issue #12)
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_LOGGING_LEVEL": "WARNING"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"vLLM server exited: {log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/v1/models", timeout=2) as resp:
                    if json.load(resp)["data"]:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"vLLM server not ready in 600 s: {log_path.read_text()[-3000:]}"
                )
            time.sleep(1.0)
        yield url, proc
    finally:
        stop_process(proc, timeout=30)
        log.close()
