"""The generated reference (genrec.docs): written from the code, stale files named by --check.

Whether the repository's generated files are current is `make docs-check`, which `make test`
runs before the suite; these tests check the generator itself, on a copy of its inputs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import typer.main

from genrec import docs
from genrec.cli import app
from genrec.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def _inputs(tmp_path: Path) -> Path:
    for rel in ("README.md", "eval/results-meta.yaml", docs.NOTES_FILE):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    shutil.copytree(ROOT / "eval/baselines", tmp_path / "eval/baselines")
    return tmp_path


def test_make_docs_writes_every_target_and_check_names_a_stale_one(tmp_path, capsys) -> None:
    root = _inputs(tmp_path)
    assert docs.main(["--check", "--root", str(root)]) == 1  # nothing generated yet
    assert docs.main(["--root", str(root)]) == 0
    assert all((root / rel).is_file() for rel in docs.TARGETS)
    capsys.readouterr()
    assert docs.main(["--check", "--root", str(root)]) == 0

    cli_page = root / "docs/reference/cli.md"
    cli_page.write_text(cli_page.read_text() + "a hand edit\n")
    assert docs.main(["--check", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert "STALE docs/reference/cli.md" in err and "README.md" not in err


def test_readme_keeps_its_hand_written_text_around_the_generated_table(tmp_path) -> None:
    root = _inputs(tmp_path)
    readme = root / "README.md"
    start, end = "<!-- generated:comparison -->", "<!-- /generated:comparison -->"
    readme.write_text(f"# hand\n\n{start}\nold table\n{end}\n\nafter\n")
    text = docs.readme(root)
    assert text.startswith("# hand\n\n") and text.endswith(f"{end}\n\nafter\n")
    assert "old table" not in text and "| LlamaRec (paper" in text


def test_every_setting_is_documented_under_its_env_name() -> None:
    page = docs.configuration(ROOT)
    comments = docs._source_notes(Settings)
    undocumented = [
        name
        for name, field in Settings.model_fields.items()
        if not (field.description or comments.get(name, ("", ""))[1])
    ]
    assert undocumented == [], "give these settings a Field(description=...)"
    for name, field in Settings.model_fields.items():
        row = next(line for line in page.splitlines() if f"`GENREC_{name.upper()}`" in line)
        assert (field.description or "").split("`")[0][:30] in row


def test_the_reference_follows_the_code() -> None:
    http = docs.http_api(ROOT)
    # the drift issue #23 names: the likelihood mode in the request options and the profiles
    assert "| `genrec-likelihood` | likelihood |" in http
    mode_rows = [line for line in http.splitlines() if line.startswith("| `mode` |")]
    assert mode_rows and all("`likelihood`" in row for row in mode_rows)
    for route in ("/v1/chat/completions", "/v1/recommendations", "/v1/events", "/health"):
        assert f"`{route}`" in http
    # ... and the Continuation constraint in the engine section
    assert "| `Continuation` | `text` |" in docs.modes(ROOT)

    cli = docs.cli(ROOT)
    root = typer.main.get_command(app)
    ctx = root.context_class(root, info_name="genrec")
    for name in root.list_commands(ctx):
        assert f"## `genrec {name}`" in cli
    assert "## `genrec eval run`" in cli and "--check" in cli

    suite = docs.eval_suite(ROOT)
    assert "## Suite" in suite and "| `history_len` |" in suite
    # the query-set protocol is a dataset format of the one suite, documented with it
    assert "## DatasetSpec" in suite and "`queries`" in suite
