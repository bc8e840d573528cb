"""End to end in Chinese: the packaged zh-shop catalog and query set, `genrec ingest` / `genrec
search` as subprocesses, the chat endpoint (real uvicorn + the official openai client, the
session's one engine), Chinese ordinals in conversations, and the query-set evaluation."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import pytest
import pytest_asyncio

from genrec.conversation.references import find_references
from genrec.data.catalog_files import load_dataset
from genrec.datasets import zh_shop_queries
from genrec.evaluation.prepare import RunOptions, prepare
from genrec.evaluation.runner import run
from genrec.evaluation.suite import Suite, load_suite
from genrec.index import CatalogIndex
from genrec.recommender import Recommender
from genrec.retrieval.registry import content_only
from genrec.server.app import create_app
from genrec.settings import Settings
from tests.test_cli_catalog import GENREC
from tests.test_conversation import answer, mapped
from tests.test_wire_schema import serve


def run_cli(args: list[str], home: Path, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "GENREC_HOME": str(home), **env}
    full.pop("GENREC_CHROMA_URL", None)
    return subprocess.run(
        [GENREC, *args], env=full, capture_output=True, text=True, timeout=300, check=False
    )


def test_the_packaged_catalog_and_query_set() -> None:
    items = load_dataset("zh-shop")
    assert len(items) == 295 and len({it.id for it in items}) == 295
    categories = {it.category for it in items}
    assert categories == {"男装", "女装", "童装", "鞋靴", "数码电子", "家居"}
    for it in items:
        assert {"season", "material", "type"} <= set(it.attributes), it.id
    queries = [json.loads(line) for line in zh_shop_queries().open(encoding="utf-8")]
    ids = {it.id for it in items}
    assert {q["split"] for q in queries} == {"validation", "test"}
    assert all(q["relevant"] and set(q["relevant"]) <= ids for q in queries)
    tee = next(q for q in queries if q["query"] == "我想买夏天穿的男装T恤")
    by_id = {it.id: it for it in items}
    assert all(
        by_id[i].category == "男装" and by_id[i].attributes["type"] == "T恤"
        for i in tee["relevant"]
    )


def test_the_shipped_suites_load_and_bad_query_files_name_their_line(tmp_path: Path) -> None:
    from genrec.errors import CatalogError, ConfigError
    from genrec.evaluation.queryset import read_queries

    repo = Path(__file__).resolve().parents[1]
    settings = Settings(home=tmp_path / "home")
    for name, split, n in [
        ("zh-shop.yaml", "test", 62),
        ("zh-shop-validation.yaml", "validation", 32),
    ]:
        suite = load_suite(repo / "eval" / name)
        assert suite.dataset.format == "queries" and suite.protocol.split == split
        prepared = prepare(suite, settings, RunOptions(out=tmp_path / name))
        assert len(prepared.cases) == n and len(prepared.dataset.items) == 295
        assert all(c.relevant and c.target in c.relevant for c in prepared.cases)
    assert load_suite(repo / "eval" / "smoke.yaml").dataset.format != "queries"
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"id": "a", "query": "男装", "relevant": ["zh0001"]}\n{"id": "b"}\n')
    with pytest.raises(CatalogError) as err:
        read_queries(bad, {"zh0001"})
    assert ":2:" in err.value.message
    bad.write_text('{"id": "a", "query": "男装", "relevant": ["nope"]}\n')
    with pytest.raises(CatalogError) as err:
        read_queries(bad, {"zh0001"})
    assert "not in the catalog" in err.value.message
    suite_file = tmp_path / "s.yaml"
    suite_file.write_text("name: x\ndataset: {format: queries, catalog: zh-shop}\nmatrix: []\n")
    with pytest.raises(ConfigError) as err:
        load_suite(suite_file)
    assert "dataset: a queries dataset needs `path`" in err.value.message
    # a query set has no interaction log: nothing to train or count; `all` is a query set's split
    base = "name: x\ndataset: {format: queries, path: zh-shop, catalog: zh-shop}\nmatrix: []\n"
    for extra, says in [
        ("baselines: [popularity]\n", "no popularity"),
        ("retrieval: {train: [itemknn]}\n", "no retrieval.train"),
        ("protocol: {inputs: [history]}\n", "inputs are query and/or both"),
    ]:
        suite_file.write_text(base + extra)
        with pytest.raises(ConfigError, match=says):
            load_suite(suite_file)
    suite_file.write_text(
        "name: x\ndataset: {format: ml-100k}\nprotocol: {split: all}\nmatrix: []\n"
    )
    with pytest.raises(ConfigError, match=r"s.yaml:3: protocol: split all"):
        load_suite(suite_file)


def test_cli_ingest_and_search_in_chinese(tmp_path: Path, settings: Settings) -> None:
    items = load_dataset("zh-shop")
    pick = [it for it in items if it.category == "男装"][:5]
    pick += [it for it in items if it.category == "女装"][:3]
    pick += [it for it in items if it.category in ("数码电子", "童装")][:4]
    catalog = tmp_path / "zh.jsonl"
    catalog.write_text(
        "".join(json.dumps(it.model_dump(), ensure_ascii=False) + "\n" for it in pick),
        encoding="utf-8",
    )
    home = tmp_path / "home"
    ingest = ["ingest", str(catalog), "--collection", "zh-cli", "--json"]
    ingested = run_cli(ingest, home, GENREC_EMBEDDING_MODEL="multilingual-e5-small")
    assert ingested.returncode == 0, ingested.stderr
    report = json.loads(ingested.stdout)
    assert (report["added"], report["lexical"], report["languages"]) == (12, True, {"zh": 12})
    # searching needs no setting: the collection names its model
    found = run_cli(["search", "男装", "--collection", "zh-cli", "--k", "5", "--json"], home)
    assert found.returncode == 0, found.stderr
    doc = json.loads(found.stdout)
    assert [it["category"] for it in doc["items"]] == ["男装"] * 5
    # the English MiniLM named against it: a clear error, exit status non-zero, nothing mixed
    mixed = run_cli(
        ["search", "男装", "--collection", "zh-cli"],
        home,
        GENREC_EMBEDDING_MODEL="all-MiniLM-L6-v2",
    )
    assert mixed.returncode != 0 and "never mixes two embedders" in mixed.stderr


def test_chinese_ordinals() -> None:
    cases = {
        "更像第二个": [((1,), False)],
        "第3款不错": [((2,), False)],
        "前两个都喜欢": [((0, 1), False)],
        "最后一个": [((4,), False)],
        "不要第一个，第三个可以": [((0,), True), ((2,), False)],
        "除了第二件": [((1,), True)],
        "第九个": [],  # not in a list of five
    }
    for text, want in cases.items():
        got = [(r.positions, r.negated) for r in find_references(text, 5)]
        assert got == want, text


def test_a_chinese_conversation_reads_its_own_answer_back(
    zh_settings: Settings, zh_index: CatalogIndex
) -> None:
    shown = [h.item.id for h in zh_index.search("男士T恤", k=3)]
    out = mapped(
        zh_settings,
        zh_index,
        [
            {"role": "user", "content": "我想买夏天穿的男装T恤"},
            answer(zh_index, shown),
            {"role": "user", "content": "和第二个类似的，但不要第一个"},
        ],
    )
    second = zh_index.get([shown[1]])[0]
    assert out.request.history == [shown[1]]
    assert shown[0] in out.request.exclude
    assert second.title in (out.request.query or "")


def test_chinese_titles_named_in_a_message(zh_index: CatalogIndex) -> None:
    from genrec.conversation import items_named

    tee = zh_index.search("男士纯棉T恤", k=1)[0].item
    assert [it.id for it in items_named(f"我喜欢{tee.title}，还有类似的吗", zh_index)] == [tee.id]
    dress = next(it for it in zh_index.all_items() if it.category == "女装")
    assert dress.id in {it.id for it in items_named(f"买过「{dress.title}」", zh_index)}
    assert items_named("我想买夏天穿的男装T恤", zh_index) == []  # a need, not a title


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def zh_url(
    zh_settings: Settings, zh_index: CatalogIndex, recommender: Recommender
) -> AsyncIterator[str]:
    """A server over the Chinese catalog, sharing the session's one engine and tokenizer."""
    rec = Recommender(
        zh_settings,
        index=zh_index,
        engine=recommender.engine,
        tokenizer=recommender.tokenizer,
        retrievers=content_only(zh_index),
    )
    async with rec:
        async for url in serve(create_app(zh_settings, recommender=rec)):
            yield url


async def test_chat_answers_a_chinese_need_with_menswear_t_shirts(
    zh_url: str, zh_index: CatalogIndex
) -> None:
    client = openai.AsyncOpenAI(base_url=zh_url + "/v1", api_key="x", max_retries=0, timeout=300)
    messages = [{"role": "user", "content": "我想买夏天穿的男装T恤"}]
    resp = await client.chat.completions.create(
        model="genrec", messages=messages, extra_body={"k": 3, "candidates": 5}
    )
    recs = resp.recommendations  # type: ignore[attr-defined]
    assert len(recs) == 3
    items = zh_index.get([r["id"] for r in recs])
    assert all(it.category == "男装" and it.attributes["type"] == "T恤" for it in items)
    text = resp.choices[0].message.content or ""
    assert all(it.title in text for it in items)  # the answer lists the Chinese titles
    # the conversation goes on in Chinese: "the second one" picks from that answer
    messages += [
        {"role": "assistant", "content": text},
        {"role": "user", "content": "还有和第二个类似的吗"},
    ]
    follow = await client.chat.completions.create(
        model="genrec", messages=messages, extra_body={"k": 2, "candidates": 5}
    )
    genrec = follow.genrec  # type: ignore[attr-defined]
    assert genrec["referenced"] == [recs[1]["id"]]
    assert recs[1]["id"] in genrec["history"]
    assert not {r["id"] for r in follow.recommendations} & {r["id"] for r in recs}  # type: ignore[attr-defined]


async def test_the_query_set_protocol_scores_channels_and_a_mode(
    zh_settings: Settings, zh_index: CatalogIndex, recommender: Recommender, tmp_path: Path
) -> None:
    # the fixture's part of the catalog, with queries whose relevant items are all in it
    part = {it.id for it in zh_index.all_items()}
    queries = tmp_path / "q.jsonl"
    rows = [json.loads(line) for line in zh_shop_queries().open(encoding="utf-8")]
    rows = [dict(r, relevant=[i for i in r["relevant"] if i in part]) for r in rows]
    wanted = {"我想买夏天穿的男装T恤", "童装", "女装连衣裙"}
    kept = [r for r in rows if r["relevant"] and r["query"] in wanted]
    queries.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
    suite = Suite.model_validate(
        {
            "name": "zh-part",
            "dataset": {"format": "queries", "catalog": "zh-shop", "path": str(queries)},
            "protocol": {"split": "all"},
            "candidates": 10,
            "ks": [5],
            "matrix": [{"modes": ["rank"]}],
            "baselines": ["retrieval"],
            "thresholds": [{"metric": "ndcg@5", "min": 0.8, "cells": "baseline/retrieval/*"}],
        }
    )
    out = tmp_path / "out"
    prepared = prepare(suite, zh_settings, RunOptions(out=out, progress=False))
    doc = await run(
        prepared,
        zh_settings,
        engine=recommender.engine,
        tokenizer=recommender.tokenizer,
        index=zh_index,
    )
    rows = {r["id"]: r for r in [*doc["cells"], *doc["baselines"]]}
    channels = {f"baseline/retrieval/{c}" for c in ("dense", "lexical", "fused")}
    assert set(rows) == {"baseline/retrieval", *channels, "default/rank/default"}
    assert doc["protocol"]["users_evaluated"] == len(kept) == 3
    assert rows["baseline/retrieval/fused"]["metrics"]["ndcg@5"] >= 0.8
    assert rows["default/rank/default"]["metrics"]["error_rate"] == 0.0
    assert all(t["passed"] for t in doc["thresholds"]), doc["thresholds"]
    written = out / "cells" / "default__rank__default.jsonl"
    assert json.loads(written.read_text(encoding="utf-8").splitlines()[1])["items"]
    assert "retrieval/fused" in (out / "report.md").read_text(encoding="utf-8")
