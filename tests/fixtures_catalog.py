"""Session fixtures for the catalog: settings, the embedding model, ML-100K, a Chroma server.

Other areas' tests use ``settings``, ``ml100k_index`` and ``chroma_server``; they are real
components (embedded Chroma on disk, the packaged MiniLM model, a `chroma run` subprocess).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from genrec.embeddings import Embedder
from genrec.index import CatalogIndex
from genrec.ingest import ingest
from genrec.settings import Settings

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ML_LATEST_SMALL = SHARED_DATA / "ml-latest-small"


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A Settings whose state lives in a session tmp dir; the converted LM is cached across runs."""
    return Settings(
        home=tmp_path_factory.mktemp("genrec-home"),
        model_cache=Path.home() / ".cache" / "genrec" / "models",
        # Content retrieval in the shared session home, whatever order tests run in: the
        # learned path trains in homes of its own (tests/test_retrieval.py, the server tests).
        train_default=False,
    )


@pytest.fixture(scope="session")
def embedder(settings: Settings) -> Embedder:
    """One loaded embedding model for the whole session."""
    emb = Embedder(settings)
    emb.encode(["warm up"])
    return emb


@pytest.fixture(scope="session")
def ml100k_index(settings: Settings, embedder: Embedder) -> CatalogIndex:
    """ML-100K (from the installed recbole package) ingested into ``settings.collection``."""
    index = CatalogIndex(settings, settings.collection, embedder)
    report = ingest(settings, dataset="ml-100k", index=index, progress=False)
    assert report.complete and index.count() == 1682
    return index


@pytest.fixture(scope="session")
def ml_latest_small() -> Path:
    """ml-latest-small from ../shared/data; skips (visibly) when it is not there."""
    if not (ML_LATEST_SMALL / "movies.csv").is_file():
        pytest.skip(f"MovieLens latest-small not found at {ML_LATEST_SMALL}")
    return ML_LATEST_SMALL


def stop_process(proc: subprocess.Popen, *, timeout: float) -> None:
    """Terminate a server the tests started; kill it if it does not stop in time."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chroma_executable() -> str:
    beside = Path(sys.executable).parent / "chroma"
    found = str(beside) if beside.exists() else shutil.which("chroma")
    if not found:
        pytest.skip("the `chroma` console script (from chromadb) is not installed")
    return found


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real `chroma run` on a free loopback port, stopped at the end of the session."""
    data = tmp_path_factory.mktemp("chroma-server")
    port = free_port()
    log = open(data / "server.log", "wb")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [
            _chroma_executable(),
            "run",
            "--path",
            str(data / "db"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"chroma run exited with {proc.returncode}: "
                    f"{(data / 'server.log').read_text(errors='replace')[-2000:]}"
                )
            try:
                with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"chroma run on port {port} did not answer within 60 s")
            time.sleep(0.2)
        yield url
    finally:
        stop_process(proc, timeout=15)
        log.close()
