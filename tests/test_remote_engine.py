"""The remote engine against a real vLLM OpenAI-compatible server with the default model: it must
recommend exactly what the in-process engine does at temperature 0. Also: engines that cannot
start surface as retryable EngineErrors, not hangs (one that dies: the last test of
tests/test_replicas_processes.py, which shares this module's vLLM server)."""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import pytest
import pytest_asyncio

from genrec.engines.base import EngineRequest
from genrec.engines.inprocess import InProcessEngine
from genrec.engines.remote import RemoteEngine
from genrec.errors import ConfigError, EngineError
from genrec.recommender import Recommender
from genrec.schema import RecommendRequest
from genrec.server.errors import http_status
from tests.fixtures_catalog import free_port

pytestmark = pytest.mark.slow

HISTORIES = [["50", "172", "181"], ["1", "95"], ["98", "127", "187"]]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def remote(settings, ml100k_index, recommender, shared_vllm):
    remote_settings = settings.model_copy(update={"engine_url": shared_vllm.started().url})
    async with Recommender(
        remote_settings, index=ml100k_index, tokenizer=recommender.tokenizer
    ) as rec:
        assert isinstance(rec.engine, RemoteEngine)
        yield rec


@pytest.mark.parametrize("mode", ["rank", "generate"])
async def test_remote_and_in_process_agree(recommender, remote, mode):
    assert remote.model_name == recommender.model_name == "SmolLM2-135M-Instruct"
    assert remote.engine.max_model_len == 2048
    for n, history in enumerate(HISTORIES):
        request = RecommendRequest(history=history, k=5, mode=mode)
        here = await recommender.recommend(request)
        there = await remote.recommend(request)
        assert there.candidates == here.candidates
        assert [i.id for i in there.items] == [i.id for i in here.items], (mode, history)
        assert there.usage.prompt_tokens == here.usage.prompt_tokens
        if n:  # both engines have seen the template's static text: its blocks are cached
            assert there.usage.cached_tokens > 0 and here.usage.cached_tokens > 0
        if mode == "rank":
            for a, b in zip(here.items, there.items, strict=True):
                assert b.score == pytest.approx(a.score, abs=0.02)
        else:
            assert there.outputs == here.outputs


async def test_remote_and_in_process_likelihood_scores_agree(recommender, remote):
    """Every candidate's score, by ID. bf16 moves a mean log-probability by a few hundredths
    between a request computed in one batch or another (the server computes prompt
    log-probabilities without its prefix cache), so near-ties may swap: scores are compared."""
    for history in HISTORIES:
        request = RecommendRequest(history=history, k=20, mode="likelihood")
        here = await recommender.recommend(request)
        there = await remote.recommend(request)
        assert there.candidates == here.candidates
        mine = {i.id: i.score for i in here.items}
        theirs = {i.id: i.score for i in there.items}
        assert set(mine) == set(theirs) == set(here.candidates)
        for item_id, score in mine.items():
            assert theirs[item_id] == pytest.approx(score, abs=0.06), (history, item_id)
        assert len(set(mine.values())) > 10  # the scores differ by candidate


async def test_remote_describe_and_concurrency(remote):
    requests = [
        RecommendRequest(history=h, k=4, mode=m) for h in HISTORIES for m in ("rank", "describe")
    ]
    results = await remote.recommend_many(requests, concurrency=6)
    for res in results:
        assert not isinstance(res, Exception), res
        assert len({i.id for i in res.items}) == 4


async def test_remote_labels_are_revalidated(remote):
    # Only the token ids we allowed come back, whatever the server returns.
    tok = remote.tokenizer
    prompt = tok.chat_prompt([{"role": "user", "content": "Pick A or B."}])
    ids = tok.label_token_ids(["A", "B"], prompt)
    got = await remote.engine.complete(EngineRequest.labels(prompt, ids))
    assert set(got.label_logprobs) == set(ids) and got.prompt_tokens > 0


async def test_unreachable_server_is_a_retryable_engine_error(settings):
    engine = RemoteEngine(settings, url=f"http://127.0.0.1:{free_port()}")
    engine.connect_wait_s = 1.0
    started = time.monotonic()
    with pytest.raises(EngineError) as info:
        await engine.start()
    assert info.value.retryable and http_status(info.value) == 503
    assert time.monotonic() - started < 60
    assert not engine.healthy


async def test_in_process_engine_that_cannot_start(settings, tmp_path: Path):
    (tmp_path / "config.json").write_text('{"architectures": ["NoSuchModel"], "model_type": "x"}')
    engine = InProcessEngine(settings, model=str(tmp_path))
    with pytest.raises(EngineError) as info:
        await engine.start()
    assert info.value.retryable and str(tmp_path) in info.value.message
    assert not engine.healthy


async def test_refusing_server_is_a_config_error_that_leaks_nothing(settings):
    # A real HTTP server that refuses every request (as with a wrong API key).
    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"error": {"message": "invalid API key"}}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        engine = RemoteEngine(settings, url=f"http://127.0.0.1:{server.server_address[1]}")
        for _ in range(2):  # a second start() tries again instead of returning early
            with pytest.raises(ConfigError, match="invalid API key"):
                await engine.start()
            assert engine._client is None and not engine.healthy
    finally:
        server.shutdown()
        server.server_close()
