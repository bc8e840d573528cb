"""`genrec ingest` and `genrec search`: the --json contract (real subprocesses) and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genrec.cli import app
from genrec.data.catalog_files import load_dataset
from genrec.index import CatalogIndex
from genrec.settings import Settings

GENREC = str(Path(sys.executable).parent / "genrec")


@pytest.fixture(scope="module")
def cli_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-home")


@pytest.fixture(scope="module")
def small_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("catalogs") / "movies.jsonl"
    items = [it for it in load_dataset("ml-100k") if int(it.id) <= 200]
    path.write_text("".join(json.dumps(it.model_dump()) + "\n" for it in items))
    return path


def run_cli(args: list[str], home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "GENREC_HOME": str(home)}
    env.pop("GENREC_CHROMA_URL", None)
    return subprocess.run(
        [GENREC, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_ingest_and_search_json_is_one_document_on_stdout(cli_home: Path, small_catalog: Path):
    ingested = run_cli(
        ["ingest", str(small_catalog), "--collection", "cli-movies", "--json"], cli_home
    )
    assert ingested.returncode == 0, ingested.stderr
    report = json.loads(ingested.stdout)  # the whole of stdout is one JSON document
    assert (report["added"], report["complete"], report["errors"]) == (200, True, [])
    assert "ingest cli-movies" in ingested.stderr  # the progress bar went to stderr

    found = run_cli(
        [
            "search",
            "--history",
            "Star Wars",
            "--history",
            "172",
            "--k",
            "4",
            "--where",
            '{"year": {"$gte": 1980}}',
            "--exclude",
            "195",
            "--collection",
            "cli-movies",
            "--json",
        ],
        cli_home,
    )
    assert found.returncode == 0, found.stderr
    doc = json.loads(found.stdout)
    assert len(doc["items"]) == 4
    for item in doc["items"]:
        assert {"id", "title", "score"} <= set(item)
        assert item["attributes"]["year"] >= 1980
        assert item["id"] not in {"50", "172", "195"}
    assert doc["items"][0]["id"] == "181"  # Return of the Jedi after Star Wars + Empire


def test_search_human_output(cli_home: Path, small_catalog: Path):
    runner = CliRunner()
    env = {"GENREC_HOME": str(cli_home)}
    runner.invoke(app, ["ingest", str(small_catalog), "--collection", "cli-movies"], env=env)
    result = runner.invoke(
        app, ["search", "Toy Story", "--k", "2", "--collection", "cli-movies"], env=env
    )
    assert result.exit_code == 0, result.stderr
    first = result.stdout.splitlines()[0].split()
    assert first[:1] == ["1"] and first[2] == "1" and "Toy Story (1995)" in result.stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["ingest", "{tmp}/nope.jsonl"], "nope.jsonl does not exist"),
        (["ingest", "{tmp}/c.xml"], "--format"),
        (["ingest", "{tmp}/c.csv", "--format", "xml"], "unknown catalog format 'xml'"),
        (["ingest", "{tmp}/latin1.csv"], "latin1.csv is not UTF-8"),
        (["ingest", "{tmp}/bad.csv", "--strict"], "line 3: missing title"),
        (["ingest", "{tmp}/c.csv", "--map", "id=movieId"], "no column movieId"),
        (["ingest", "{tmp}/c.csv", "--dataset", "ml-100k"], "not both"),
        (["ingest"], "give a catalog SOURCE"),
        (["ingest", "--dataset", "ml-1b"], "unknown dataset 'ml-1b'"),
        (["search", "x", "--where", "{year"], "--where is not valid JSON"),
        (["search", "x", "--where", '{"year": {"$foo": 1}}'], "bad where"),
        (["search", "x", "--collection", "not-there"], "collection 'not-there' does not exist"),
        (["ingest", "{tmp}/c.csv", "--collection", "x"], "bad collection name"),
    ],
)
def test_bad_input_is_one_line_and_a_nonzero_exit(
    tmp_path: Path, settings: Settings, ml100k_index: CatalogIndex, args: list[str], needle: str
):
    (tmp_path / "c.xml").write_text("<x/>")
    (tmp_path / "c.csv").write_text("id,title\n1,One\n")
    (tmp_path / "bad.csv").write_text("id,title\n1,One\n2,\n")
    (tmp_path / "latin1.csv").write_bytes("id,title\n1,Caf\xe9\n".encode("latin-1"))
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    # the session's home, where ML-100K is ingested already (so `search` needs no ingest)
    result = CliRunner().invoke(app, args, env={"GENREC_HOME": str(settings.home)})
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]
    assert ml100k_index.count() == 1682  # nothing was written into the default collection


def test_bad_rows_are_warned_about_on_stderr(tmp_path: Path, settings: Settings):
    path = tmp_path / "bad.csv"
    path.write_text("id,title\n1,One\n2,\n3,Three\n")
    result = CliRunner().invoke(
        app,
        ["ingest", str(path), "--collection", "cli-bad-rows", "--json"],
        env={"GENREC_HOME": str(settings.home)},
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["added"] == 2
    assert "1 bad row(s)" in result.stderr and "line 3: missing title" in result.stderr
