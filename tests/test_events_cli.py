"""`genrec events import|export` and `genrec train --events` as real subprocesses: the loop
record -> train -> serve without exporting files, and an export that `genrec train` reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from genrec.data.catalog_files import load_dataset
from genrec.data.movielens import ml100k_dir
from genrec.events.sqlite import SQLiteStore

GENREC = str(Path(sys.executable).parent / "genrec")
COLLECTION = "events-cli"
ITEMS = 300  # ML-100K's first 300 movies


def run_cli(args: list[str], home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "GENREC_HOME": str(home), "GENREC_TRAIN_DEFAULT": "false"}
    for name in ("GENREC_CHROMA_URL", "GENREC_EVENTS_URL", "GENREC_CONFIG"):
        env.pop(name, None)
    return subprocess.run(
        [GENREC, *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("events-cli")
    catalog = home / "items.jsonl"
    items = [it for it in load_dataset("ml-100k") if int(it.id) <= ITEMS]
    catalog.write_text("".join(json.dumps(it.model_dump()) + "\n" for it in items))
    done = run_cli(["ingest", str(catalog), "--collection", COLLECTION, "--json"], home)
    assert done.returncode == 0, done.stderr
    return home


@pytest.fixture(scope="module")
def log(home: Path) -> Path:
    """ML-100K's real interactions on those items, plus rows that must be skipped."""
    rows = ["user_id,item_id,timestamp,rating"]
    with open(ml100k_dir() / "ml-100k.inter", encoding="utf-8") as f:
        next(f)
        for line in f:
            user, item, rating, ts = line.rstrip("\n").split("\t")[:4]
            if int(item) <= ITEMS and int(user) <= 150:
                rows.append(f"{user},{item},{ts},{rating}")
    rows += ["1,99999,881250949,4", "1,50,not-a-time,4", ",50,881250949,4"]
    path = home / "log.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_import_is_checked_row_by_row_and_idempotent(home: Path, log: Path) -> None:
    good = sum(1 for _ in log.open()) - 1 - 3
    first = run_cli(["events", "import", str(log), "--collection", COLLECTION, "--json"], home)
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert (doc["accepted"], doc["duplicates"], doc["rejected"]) == (good, 0, 2)
    assert doc["unreadable"] == 1  # no user at all: not an event
    assert "not in the catalog" in first.stderr and "not-a-time" in first.stderr
    again = run_cli(["events", "import", str(log), "--collection", COLLECTION, "--json"], home)
    assert json.loads(again.stdout)["accepted"] == 0
    assert json.loads(again.stdout)["duplicates"] == good
    with SQLiteStore(home / "events.sqlite3") as store:
        assert store.count(COLLECTION) == good
        state = store.user_state(COLLECTION, "1", 5)
        assert len(state.history) == 5 and state.consumed  # ratings are consumed items


def test_export_writes_a_log_that_train_reads(home: Path, log: Path) -> None:
    out = home / "export.jsonl"
    done = run_cli(["events", "export", str(out), "--collection", COLLECTION, "--json"], home)
    assert done.returncode == 0, done.stderr
    n = json.loads(done.stdout)["events"]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == n > 0
    assert {"user_id", "item_id", "timestamp", "rating", "type", "event_id"} <= set(lines[0])
    assert [x["timestamp"] for x in lines] == sorted(x["timestamp"] for x in lines)
    from genrec.data.interactions import read_log

    read = read_log(out)
    assert len(read.interactions) == n and not read.errors


def test_train_events_learns_from_the_store(home: Path, log: Path) -> None:
    done = run_cli(
        ["train", "--events", "--collection", COLLECTION, "--models", "itemknn,ease", "--json"],
        home,
    )
    assert done.returncode == 0, done.stderr
    manifest = json.loads(done.stdout)
    assert set(manifest["models"]) >= {"itemknn", "ease"}
    assert manifest["data"]["source"].startswith("events:")
    with SQLiteStore(home / "events.sqlite3") as store:
        assert manifest["data"]["interactions"] == store.count(COLLECTION)
    both = run_cli(["train", str(log), "--events", "--collection", COLLECTION], home)
    assert both.returncode == 2 and "not both" in both.stderr


def test_recommend_takes_a_user(home: Path) -> None:
    # a user alone is a request (checked before any engine starts: k=30 > 20 candidates)
    only_user = run_cli(["recommend", "--user", "u1", "--k", "30", "--json"], home)
    assert only_user.returncode == 2 and "k=30" in only_user.stderr
    empty = run_cli(["recommend", "--user", "", "--json"], home)
    assert empty.returncode == 2 and "user_id" in empty.stderr and empty.stdout == ""
