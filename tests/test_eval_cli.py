"""`genrec eval` on bad input: a clear error and exit code 2 before any engine work.

These runs never get as far as an engine (nothing here starts vLLM), so they are fast; each one
asserts the message names what is wrong.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from genrec.cli import app

ROOT = Path(__file__).resolve().parents[1]
ML_SMALL = ROOT.parent / "shared" / "data" / "ml-latest-small"
needs_ml_small = pytest.mark.skipif(
    not (ML_SMALL / "ratings.csv").is_file(), reason=f"{ML_SMALL} is not available"
)

SUITE = """\
name: bad
dataset:
  format: movielens
  path: {path}
protocol:
  users: 5
matrix:
  - templates: [rank_default]
    modes: [rank]
"""


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.setenv("GENREC_HOME", str(tmp_path / "home"))
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, ["eval", *args])

    return invoke


def suite_file(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "suite.yaml"
    p.write_text(text)
    return p


# One edit of SUITE each, the command that must refuse it (exit 2, before any engine work and
# without writing results) and what its message must name.
BAD_EDITS = [
    pytest.param(
        "users: 5",
        "users: many",
        "run",
        ["suite.yaml:6: protocol.users"],
        id="malformed_suite_names_the_line",
    ),
    pytest.param(
        "movielens",
        "netflix",
        "run",
        ["suite.yaml:3: dataset.format"],
        id="unknown_dataset_format_names_the_line",
    ),
    pytest.param(
        "rank_default",
        "rank_fancy",
        "run",
        ["unknown template 'rank_fancy'", "rank_default"],
        id="unknown_template",
        marks=needs_ml_small,
    ),
    pytest.param(
        "rank_default",
        "describe_default",
        "validate",
        ["'describe_default' serves none"],
        id="template_that_serves_no_mode_of_its_block",
        marks=needs_ml_small,
    ),
    pytest.param(
        "users: 5",
        "users: 5000",
        "validate",
        ["only 610 users"],
        id="sample_larger_than_the_dataset",
        marks=needs_ml_small,
    ),
]


@pytest.mark.parametrize(("old", "new", "command", "named"), BAD_EDITS)
def test_bad_suite_is_refused_naming_the_problem(cli, tmp_path, old, new, command, named):
    p = suite_file(tmp_path, SUITE.format(path=ML_SMALL).replace(old, new))
    out = tmp_path / "out"
    res = cli(command, str(p), *(["--out", str(out)] if command == "run" else []))
    assert res.exit_code == 2
    for text in named:
        assert text in res.stderr
    if command == "run":
        assert not out.exists()


def test_missing_dataset_path(cli, tmp_path):
    p = suite_file(tmp_path, SUITE.format(path=tmp_path / "no-such-folder"))
    res = cli("run", str(p))
    assert res.exit_code == 2 and "no-such-folder does not exist" in res.stderr


def test_missing_suite_file(cli, tmp_path):
    res = cli("run", str(tmp_path / "nope.yaml"))
    assert res.exit_code == 2 and "suite file not found" in res.stderr


def test_too_few_interactions_after_filtering(cli, tmp_path):
    data = tmp_path / "tiny"
    data.mkdir()
    (data / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n"
        + "".join(f"{u},{i},4.0,{u * 10 + i}\n" for u in range(1, 4) for i in range(1, 4))
    )
    (data / "movies.csv").write_text(
        "movieId,title,genres\n" + "".join(f"{i},Film {i} (1990),Drama\n" for i in range(1, 4))
    )
    res = cli("validate", str(suite_file(tmp_path, SUITE.format(path=data))))
    assert res.exit_code == 2
    assert "no user is left" in res.stderr and "5-core" in res.stderr


@needs_ml_small
def test_validate_describes_the_run(cli, tmp_path):
    res = cli("validate", str(ROOT / "eval" / "smoke.yaml"), "--data", str(ML_SMALL), "--json")
    assert res.exit_code == 0, res.stderr
    import json

    doc = json.loads(res.stdout)
    assert doc["stats"]["users"] == 610 and doc["stats"]["items"] == 3650
    assert doc["collection"] == "eval-ml-latest-small-5core"
    assert {c["id"] for c in doc["cells"]} >= {"default/rank/rank_default"}


@needs_ml_small
def test_shipped_suite_validates_from_another_working_directory(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # `../shared/data/...` is found via the repository root
    res = cli("validate", str(ROOT / "eval" / "smoke.yaml"), "--json")
    assert res.exit_code == 0, res.stderr
    assert '"suite": "smoke"' in res.stdout


def test_missing_relative_dataset_path_lists_what_was_tried(cli, tmp_path, monkeypatch):
    (tmp_path / "eval").mkdir()
    p = suite_file(tmp_path / "eval", SUITE.format(path="no-such-folder"))
    monkeypatch.chdir(tmp_path)
    res = cli("validate", str(p))
    assert res.exit_code == 2 and "no-such-folder does not exist (tried" in res.stderr
    for tried in (tmp_path, tmp_path / "eval"):
        assert str(tried / "no-such-folder") in res.stderr
