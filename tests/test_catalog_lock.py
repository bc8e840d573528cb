"""One writer per embedded Chroma folder: real `genrec` processes against this one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from genrec.data.catalog_files import load_dataset
from genrec.embeddings import Embedder
from genrec.errors import CatalogBusy
from genrec.index import CatalogIndex
from genrec.server.errors import http_status
from genrec.settings import Settings

GENREC = str(Path(sys.executable).parent / "genrec")
HOLD_EXCLUSIVELY = """
import sys, time
from pathlib import Path
from genrec.folder_lock import FolderLock
with FolderLock.open_shared(Path(sys.argv[1])).exclusive():
    print("writing", flush=True)
    time.sleep(300)
"""


def own_home(settings: Settings, tmp_path: Path) -> Settings:
    return settings.model_copy(update={"home": tmp_path / "home", "chroma_url": None})


def genrec(args: list[str], settings: Settings) -> subprocess.CompletedProcess:
    env = {**os.environ, "GENREC_HOME": str(settings.home)}
    env.pop("GENREC_CHROMA_URL", None)
    return subprocess.run(
        [GENREC, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_no_other_process_writes_while_the_folder_is_open(
    tmp_path: Path, settings: Settings, embedder: Embedder
):
    mine = own_home(settings, tmp_path)
    items = load_dataset("ml-100k")[:30]
    index = CatalogIndex(mine, "shared-folder", embedder)
    index.upsert(items[:20], progress=False)  # this process now has the folder open

    catalog = tmp_path / "more.jsonl"
    catalog.write_text("".join(json.dumps(it.model_dump()) + "\n" for it in items))
    other = genrec(["ingest", str(catalog), "--collection", "shared-folder"], mine)
    assert other.returncode == 1, other.stderr  # retryable, not bad input (which is 2)
    message = other.stderr.strip().splitlines()[-1]
    assert "is open in another process" in message and "GENREC_CHROMA_URL" in message
    assert index.count() == 20 and index.complete  # nothing was written behind our back

    same = tmp_path / "same.jsonl"  # what is there already: nothing to write, nothing refused
    same.write_text("".join(json.dumps(it.model_dump()) + "\n" for it in items[:20]))
    unchanged = genrec(["ingest", str(same), "--collection", "shared-folder", "--json"], mine)
    assert unchanged.returncode == 0, unchanged.stderr
    assert json.loads(unchanged.stdout)["unchanged"] == 20

    # readers go together
    found = genrec(["search", "Toy Story", "--collection", "shared-folder", "--json"], mine)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["items"][0]["title"] == "Toy Story"

    index.upsert(items, progress=False)  # and this process still writes
    assert index.count() == 30


def test_a_writer_keeps_readers_out_and_leaves_no_lock_when_killed(
    tmp_path: Path, settings: Settings, embedder: Embedder
):
    mine = own_home(settings, tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            HOLD_EXCLUSIVELY,
            str(mine.chroma_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "writing"
        index = CatalogIndex(mine, "after-the-writer", embedder)
        with pytest.raises(CatalogBusy, match="being written by another process") as err:
            index.count()
        assert http_status(err.value) == 503 and err.value.retryable
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert index.count() == 0  # the dead writer's lock went with it
    index.upsert(load_dataset("ml-100k")[:5], progress=False)
    assert index.count() == 5
