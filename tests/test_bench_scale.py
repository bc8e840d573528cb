"""`genrec bench scale` end to end at a tiny size: real synthetic data, a real `genrec ingest` and
`genrec train` in subprocesses, real Chroma, retrieval timed in a fresh process. The rank part
needs the LM and a second catalog, so it is left out here (--no-rank)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from genrec.bench import synthetic
from genrec.bench.scale_latency import histories_from_log
from genrec.bench.standin import topic_phrase
from genrec.data.item import Item

GENREC = str(Path(sys.executable).parent / "genrec")


def test_bench_scale_measures_every_step(tmp_path: Path):
    env = {
        **os.environ,
        "GENREC_HOME": str(tmp_path / "home"),
        "GENREC_MODEL_CACHE": str(Path.home() / ".cache" / "genrec" / "models"),
    }
    args = [
        *("bench", "scale", "--items", "600", "--users", "120", "--events", "3000"),
        *("--models", "itemknn", "--requests", "4", "--no-rank", "--work", str(tmp_path / "w")),
    ]
    done = subprocess.run([GENREC, *args], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads(done.stdout)  # one JSON document, progress on stderr
    assert "scale: timing retrieval" in done.stderr
    assert doc["sizes"] == {"items": 600, "users": 120, "events": doc["data"]["events"]}
    assert doc["ingest"]["items"] == doc["ingest"]["written"] == 600
    assert doc["ingest"]["peak_rss_mib"] > 50 and doc["ingest"]["items_per_s"] > 0
    knn = doc["train"]["itemknn"]
    assert knn["peak_rss_mib"] > 50 and 0 < knn["validation_ndcg@10"]["itemknn"] <= 1
    retrieve = doc["retrieve"]
    assert retrieve["items"] == 600 and retrieve["default_retriever"] in ("itemknn", "hybrid")
    cells = {(c["retriever"], c["filter"], c["concurrency"]): c for c in retrieve["cells"]}
    for name in ("content", "itemknn", "hybrid", "popular"):
        for filtered in (False, True):
            for level in (1, 8):
                cell = cells[(name, filtered, level)]
                assert cell["requests"] == 4 and 0 < cell["p50_ms"] <= cell["p99_ms"], cell
                if filtered and name != "popular":  # each distinct filter's first use, apart
                    assert 1 <= cell["first_filter_use"]["requests"] <= 12, cell
    assert retrieve["process"]["peak_rss_mib"] >= retrieve["memory_after_load"]["rss_mib"] > 50

    # --reuse keeps the collection and its bundle: nothing is ingested or trained again
    again = subprocess.run(
        [GENREC, *args, "--reuse", "--retrievers", "content"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    doc = json.loads(again.stdout)
    assert doc["ingest"]["skipped"] == "reused" and doc["train"] == {"skipped": "reused"}
    assert {c["retriever"] for c in doc["retrieve"]["cells"]} == {"content", "popular"}


def test_synthetic_histories_and_stand_in_phrases(tmp_path: Path):
    written = synthetic.write(tmp_path, synthetic.Sizes(items=300, users=50, events=1000))
    histories = histories_from_log(Path(written["log"]), 10, length=4)
    assert len(histories) == 10 and all(1 <= len(h) <= 4 for h in histories)
    assert all(len(set(h)) == len(h) for h in histories)  # distinct items, oldest first
    assert topic_phrase("Sovena travel guide. Books. Genres: scented, leather.") == (
        "travel guide. Books. Genres: scented, leather."
    )
    first = Item.model_validate(json.loads(Path(written["catalog"]).read_text().splitlines()[0]))
    phrase = topic_phrase(first.embedding_text())  # the generator's own format
    assert first.attributes["brand"] not in phrase and first.attributes["colour"] not in phrase
    assert all(tag in phrase for tag in first.tags) and first.category in phrase
    # short titles, distinct while a noun has fewer items than there are brands
    titles = [json.loads(line)["title"] for line in Path(written["catalog"]).open()]
    assert len(set(titles)) == len(titles) and max(len(t.split()) for t in titles) <= 3
