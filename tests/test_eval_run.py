"""The evaluation end to end with the real engine (the session's `recommender` fixture), the
engine-output cache, resuming, a failing request, and `--check`.

One smoke run feeds most tests: eval/smoke.yaml whole, as `genrec eval run eval/smoke.yaml
--check` runs it (every request reaches the engine, every threshold must pass), on the session's
engine rather than one of its own. Reruns are answered from the cache by a *fresh, never-started*
engine, which proves they cost no engine work at all.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest_asyncio
from typer.testing import CliRunner

from genrec.engines.base import EngineRequest
from genrec.engines.inprocess import InProcessEngine
from genrec.evaluation.cache import CachingEngine
from genrec.evaluation.runner import RunOptions, prepare, read_records, run
from genrec.evaluation.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "eval" / "smoke.yaml"
CELLS = {  # cell: users (the suite's 30, fewer where a block says so)
    "default/rank/rank_default": 30,
    "default/rank/rank_brief": 30,
    "default/describe/describe_default": 10,
    "default/generate/generate_default": 6,
    "default/generate/generate_numbered": 6,
}
USERS = CELLS["default/rank/rank_default"]


def options(base: Path, name: str, data: Path, **kw) -> RunOptions:
    return RunOptions(out=base / name, cache_dir=base / "cache", data=data, progress=False, **kw)


def cell_items(out: Path) -> dict[str, dict[str, list]]:
    """Per cell, per user: the returned item IDs (what the ranking metrics are computed from)."""
    got = {}
    for p in sorted((out / "cells").glob("*.jsonl")):
        fingerprint = json.loads(p.read_text().splitlines()[0])["fingerprint"]
        records = read_records(p, fingerprint)  # skips a line cut short by an interruption
        got[p.stem] = {u: [i[0] for i in r["items"]] for u, r in records.items() if r["ok"]}
    return got


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def smoke(recommender, embedder, ml_latest_small, tmp_path_factory):
    base = tmp_path_factory.mktemp("eval")
    suite = load_suite(SMOKE)
    prepared = prepare(suite, recommender.settings, options(base, "first", ml_latest_small))
    doc = await run(
        prepared,
        recommender.settings,
        engine=recommender.engine,
        embedder=embedder,
        tokenizer=recommender.tokenizer,
    )
    return SimpleNamespace(doc=doc, base=base, suite=suite, data=ml_latest_small)


async def test_smoke_suite_end_to_end(smoke):
    doc = smoke.doc
    assert [(c["id"], c["users_completed"]) for c in doc["cells"]] == list(CELLS.items())
    p = doc["protocol"]
    assert p["stats"]["users"] == 610 and p["stats"]["items"] == 3650
    assert p["users_evaluated"] == USERS and p["k_requested"] == p["candidates"] == 20
    for cell in doc["cells"]:
        m = cell["metrics"]
        assert cell["requests_failed"] == 0, cell
        assert set(m) >= {"recall@10", "ndcg@5", "mrr@20", "candidate_recall", "validity_rate"}
        assert 0.0 <= m["ndcg@10"] <= m["recall@10"] <= m["recall@20"] <= 1.0
        assert m["in_history_rate"] == 0.0  # the whole history is masked
        assert m["prompt_tokens"] > 0 and cell["model"] == "SmolLM2-135M-Instruct"
    rank = {c["id"]: c for c in doc["cells"]}["default/rank/rank_default"]
    assert (
        rank["metrics"]["validity_rate"] == 1.0 and rank["metrics"]["outside_candidates_rate"] == 0
    )
    # The smoke run warmed no cache: every request reached the engine and was timed.
    assert rank["latency_requests"] == USERS and rank["latency_ms"]["llm"]["p50"] > 0
    records = read_records(
        smoke.base / "first" / "cells" / "default__rank__rank_default.jsonl",
        _fingerprint(smoke, "default/rank/rank_default"),
    )
    assert len(records) == USERS
    assert all(len(r["items"]) == 20 and len(r["candidates"]) == 20 for r in records.values())

    baselines = {b["id"]: b for b in doc["baselines"] if "[n=" not in b["id"]}
    # The smaller blocks are compared with baselines on their own users (the first 10, 6).
    subsets = {b["id"] for b in doc["baselines"]} - set(baselines)
    assert {"baseline/retrieval[n=10]", "baseline/popularity[n=6]"} <= subsets
    # The smoke suite trains itemknn and ease: each retriever has a row of its own, and
    # `retrieval` is the order of the one the LM cells re-rank (the best by validation).
    retrievers = {"content", "itemknn", "ease", "hybrid"}
    assert set(baselines) == {"baseline/popularity", "baseline/retrieval", "baseline/random"} | {
        f"baseline/retrieval/{r}" for r in retrievers
    }
    default = baselines["baseline/retrieval"]["retriever"]
    assert default in retrievers - {"content"}
    assert (
        baselines["baseline/retrieval"]["metrics"]
        == (baselines[f"baseline/retrieval/{default}"]["metrics"])
    )
    # Same candidates: retrieval order and random order share the retrieval ceiling.
    cands = baselines["baseline/retrieval"]["metrics"]["candidate_recall"]
    assert baselines["baseline/random"]["metrics"]["candidate_recall"] == cands
    assert rank["metrics"]["candidate_recall"] == cands  # the recommender retrieved the same
    assert doc["passed"] and all(t["passed"] for t in doc["thresholds"])


def _fingerprint(smoke, cell_id: str) -> dict:
    first = smoke.base / "first" / "cells" / (cell_id.replace("/", "__") + ".jsonl")
    return json.loads(first.read_text().splitlines()[0])["fingerprint"]


async def test_reports_are_written(smoke):
    out = smoke.base / "first"
    results = json.loads((out / "results.json").read_text())
    assert results["environment"]["git_commit"] and "genrec" in results["environment"]["packages"]
    assert results["protocol"]["split"] == "test" and results["suite"]["name"] == "smoke"
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2  # metric@K curves, latency distributions
    assert "<script" not in html and "http://" not in html and "https://" not in html
    md = (out / "report.md").read_text()
    assert "| default | rank_default |" in md and "baseline/popularity" in md


async def test_rerun_is_answered_by_the_cache_without_starting_an_engine(smoke, recommender):
    never_started = InProcessEngine(recommender.settings)
    prepared = prepare(smoke.suite, recommender.settings, options(smoke.base, "again", smoke.data))
    doc = await run(prepared, recommender.settings, engine=never_started)
    assert not never_started.healthy  # vLLM was never started
    assert doc["engine_cache"]["inner_calls"] == 0 and doc["engine_cache"]["misses"] == 0
    assert doc["engine_cache"]["hits"] >= sum(CELLS.values())
    assert cell_items(smoke.base / "again") == cell_items(smoke.base / "first")
    for a, b in zip(doc["cells"], smoke.doc["cells"], strict=True):
        assert {k: v for k, v in a["metrics"].items() if "@" in k} == {
            k: v for k, v in b["metrics"].items() if "@" in k
        }
        assert a["latency_requests"] == 0  # cache hits are not timed


async def test_interrupted_run_resumes_with_only_the_missing_requests(smoke, recommender):
    out = smoke.base / "resumed"
    shutil.copytree(smoke.base / "first" / "cells", out / "cells")
    cell = out / "cells" / "default__rank__rank_default.jsonl"
    lines = cell.read_text().splitlines()
    # Keep the header and two results, then a line cut short by the interruption.
    cell.write_text("\n".join(lines[:3]) + "\n" + lines[3][:40])
    never_started = InProcessEngine(recommender.settings)
    prepared = prepare(
        smoke.suite, recommender.settings, options(smoke.base, "resumed", smoke.data)
    )
    doc = await run(prepared, recommender.settings, engine=never_started)
    # One rank_labels call per request (20 labels fit one call), only for the missing users.
    assert doc["engine_cache"]["hits"] == USERS - 2 and doc["engine_cache"]["misses"] == 0
    assert cell_items(out) == cell_items(smoke.base / "first")

    # A completed out dir is not rerun at all: no Recommender, no engine, no cache lookups.
    doc = await run(prepared, recommender.settings, engine=never_started)
    assert doc["engine_cache"] == {
        "dir": str(smoke.base / "cache"),
        "hits": 0,
        "misses": 0,
        "inner_calls": 0,
    }


async def test_caching_engine_counts_and_never_stops_a_running_engine(recommender, tmp_path):
    engine = recommender.engine
    cache = CachingEngine(engine, tmp_path)
    prompt = recommender.tokenizer.chat_prompt([{"role": "user", "content": "Say yes."}])
    a = await cache.complete(EngineRequest(prompt, max_tokens=3))
    b = await cache.complete(EngineRequest(prompt, max_tokens=3))
    assert a == b and cache.inner_calls == 1 and cache.hits == 1
    await cache.complete(EngineRequest(prompt, max_tokens=4))  # another parameter: another key
    assert cache.inner_calls == 2
    unseeded = EngineRequest(prompt, max_tokens=3, temperature=0.8)  # not cached
    await cache.complete(unseeded)
    await cache.complete(unseeded)
    assert cache.inner_calls == 4
    ids = recommender.tokenizer.label_token_ids(["A", "B"], prompt)
    first = await cache.complete(EngineRequest.labels(prompt, ids))
    again = await cache.complete(EngineRequest.labels(prompt, ids))
    assert first == again and set(again.label_logprobs) <= set(ids) and cache.inner_calls == 5
    # The cache is on disk: a new wrapper answers from it.
    other = CachingEngine(engine, tmp_path)
    assert await other.complete(EngineRequest(prompt, max_tokens=3)) == a
    assert other.inner_calls == 0
    await cache.shutdown()
    await other.shutdown()
    assert engine.healthy  # it was running before the cache came: its owner stops it


async def test_a_failing_request_is_recorded_not_fatal(recommender, embedder, tmp_path):
    # 25 items: a user with 10 history items leaves 15 candidates, fewer than the k=20 asked,
    # which the recommender refuses (InvalidRequest) - for that request only.
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text(
        "".join(
            json.dumps({"id": f"m{i}", "title": f"Film number {i}", "tags": ["Drama"]}) + "\n"
            for i in range(25)
        )
    )
    cases = tmp_path / "cases.jsonl"
    cases.write_text(
        json.dumps({"user_id": "short", "history": ["m1", "m2", "m3"], "target": "m7"})
        + "\n"
        + json.dumps({"user_id": "long", "history": [f"m{i}" for i in range(10)], "target": "m20"})
        + "\n"
    )
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(
        f"name: failing\ndataset: {{format: jsonl, path: {cases}, catalog: {catalog}}}\n"
        "matrix:\n  - templates: [rank_default]\n    modes: [rank]\n"
        "thresholds:\n  - {metric: error_rate, max: 0.0}\n"
    )
    prepared = prepare(
        load_suite(suite_file),
        recommender.settings,
        RunOptions(out=tmp_path / "out", cache_dir=tmp_path / "cache", progress=False),
    )
    doc = await run(prepared, recommender.settings, engine=recommender.engine, embedder=embedder)
    cell = doc["cells"][0]
    assert cell["users_completed"] == 2 and cell["requests_ok"] == 1
    assert cell["requests_failed"] == 1 and cell["error_types"] == {"InvalidRequest": 1}
    assert cell["metrics"]["error_rate"] == 0.5
    assert not doc["passed"]
    failed = [t for t in doc["thresholds"] if not t["passed"]]
    assert [t["metric"] for t in failed] == ["error_rate"]


def test_check_fails_naming_the_metric_below_its_threshold(smoke, recommender, tmp_path):
    # The smoke suite with an impossible bar, over the finished smoke run's --out: every request
    # is already done there, so the CLI reports without starting an engine.
    text = SMOKE.read_text() + "  - {metric: recall@10, min: 1.01, cells: '*/rank/*'}\n"
    suite = tmp_path / "impossible.yaml"
    suite.write_text(text)
    config = tmp_path / "genrec.toml"
    config.write_text(
        f'home = "{recommender.settings.home}"\nmodel_cache = "{recommender.settings.models_dir}"\n'
    )
    args = [
        "eval",
        "run",
        str(suite),
        "--data",
        str(smoke.data),
        "--out",
        str(smoke.base / "first"),
        "--config",
        str(config),
        "--json",
    ]
    res = CliRunner().invoke(app_(), [*args, "--check"])
    assert res.exit_code == 1, res.stderr
    assert "FAIL recall@10 of default/rank/rank_default" in res.stderr
    assert "needs >= 1.01" in res.stderr
    doc = json.loads(res.stdout)  # --json: one JSON document on stdout, nothing else
    assert doc["passed"] is False
    # Without --check the same run reports the failure but exits 0.
    assert CliRunner().invoke(app_(), args).exit_code == 0


def app_():
    from genrec.cli import app

    return app


async def test_fidelity_through_an_lm_cell(recommender, embedder, tmp_path):
    # The deletion test through the real Recommender (rank mode) on a small catalog: lists of
    # k=5, the LM's sentences only for the first user, one request per distinct cited set.
    genres = ["Drama", "Comedy", "Horror", "Western", "Animation"]
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text(
        "".join(
            json.dumps({"id": f"m{i}", "title": f"{g} film {i}", "tags": [g]}) + "\n"
            for i, g in ((i, genres[i % 5]) for i in range(40))
        )
    )
    cases = tmp_path / "cases.jsonl"
    cases.write_text(
        "".join(
            json.dumps({"user_id": u, "history": h, "target": t}) + "\n"
            for u, h, t in (("a", ["m0", "m5", "m11"], "m10"), ("b", ["m2", "m7", "m13"], "m12"))
        )
    )
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(
        f"name: fidelity\ndataset: {{format: jsonl, path: {cases}, catalog: {catalog}}}\n"
        "candidates: 10\nks: [5]\n"
        "matrix:\n  - templates: [rank_default]\n    modes: [rank]\n"
        "fidelity: {retrieval: false, users: 2, sentence_users: 1, k: 5}\n"
    )
    prepared = prepare(
        load_suite(suite_file),
        recommender.settings,
        RunOptions(out=tmp_path / "out", cache_dir=tmp_path / "cache", progress=False),
    )
    doc = await run(prepared, recommender.settings, engine=recommender.engine, embedder=embedder)
    cell = doc["fidelity"]["default/rank/rank_default"]
    assert cell["users"] == 2 and cell["errors"] == 0
    assert cell["items"] == 10 and cell["evidence_rate"] == 1.0  # two lists of k=5
    assert 0 < cell["tested"] <= 10 and cell["fidelity"] is not None
    assert 2 < cell["requests"] <= 2 + cell["tested"]  # shared by items citing the same items
    assert cell["sentences"] == 5 and cell["sentence_outside_rate"] == 0.0  # the first user's
