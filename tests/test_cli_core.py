"""The core CLI: real subprocesses for what must keep stdout clean, CliRunner for the rest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from genrec.cli import app
from genrec.modes.likelihood import scored_texts
from genrec.schema import RecommendRequest

GENREC = str(Path(sys.executable).parent / "genrec")


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: int = 900):
    return subprocess.run(
        [GENREC, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def one_json_document(stdout: str) -> dict:
    lines = stdout.splitlines()
    assert len(lines) == 1, f"stdout must be exactly one JSON document, got: {stdout[:2000]}"
    return json.loads(lines[0])


@pytest.fixture
def env_for(settings):
    return {
        "GENREC_HOME": str(settings.home),
        "GENREC_MODEL_CACHE": str(settings.models_dir),
        "GENREC_TRAIN_DEFAULT": "false",
    }


def test_prompts_list_and_show(env_for):
    out = run_cli("prompts", "list", "--json", env=env_for)
    assert out.returncode == 0, out.stderr
    doc = one_json_document(out.stdout)
    names = {t["name"] for t in doc["templates"]}
    assert {"rank_default", "generate_default", "describe_default"} <= names and len(names) >= 6
    assert doc["errors"] == []
    show = run_cli("prompts", "show", "rank_brief", env=env_for)
    assert show.returncode == 0 and "{% block user %}" in show.stdout
    missing = run_cli("prompts", "show", "nope", env=env_for)
    assert missing.returncode == 2 and "unknown template 'nope'" in missing.stderr


def test_model_prepare_json_is_clean(env_for):
    out = run_cli("model", "prepare", "--json", env=env_for)
    assert out.returncode == 0, out.stderr
    doc = one_json_document(out.stdout)
    assert doc["name"] == "SmolLM2-135M-Instruct" and Path(doc["model"]).is_dir()


def test_bad_options_fail_fast_naming_the_field(env_for):
    for args, word in [
        (["--history", "50", "--template", "nope"], "template"),
        (["--history", "50", "--mode", "describe", "--template", "rank_default"], "rank_default"),
        (["--history", "50", "--k", "30"], "k=30"),
        (["--k", "3"], "query or a history"),
    ]:
        out = run_cli("recommend", *args, "--json", env=env_for, timeout=120)
        assert out.returncode == 2, (args, out.stderr)
        assert out.stdout == "" and word in out.stderr, (args, out.stderr)


def test_prompts_render_shows_exactly_what_the_lm_receives(
    monkeypatch, env_for, recommender, ml100k_index
):
    for key, value in env_for.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(
        app,
        ["prompts", "render", "rank_default", "--history", "50", "--history", "181",
         "--query", "space", "--k", "3", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    request = RecommendRequest(history=["50", "181"], query="space", k=3, mode="rank")
    plan = recommender.plan(request.model_copy(update={"template": "rank_default"}))
    history, candidates = recommender.retrieve(plan)
    expected = recommender.render(plan, history, candidates)
    assert doc["prompt"] == expected.prompt
    assert doc["prompt_tokens"] == expected.prompt_tokens
    assert [c["id"] for c in doc["candidates"]] == [c.id for c in candidates]
    assert doc["prompt"].endswith("<|im_start|>assistant\n")
    # likelihood: the prompt as scored (here padded for the prefix cache) and each scored text
    monkeypatch.setenv("GENREC_LIKELIHOOD_ALIGN", "true")
    result = CliRunner().invoke(
        app, ["prompts", "render", "likelihood_need", "--history", "50", "--json"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    plan = recommender.plan(RecommendRequest(history=["50"], mode="likelihood"))
    history, candidates = recommender.retrieve(plan)
    expected = recommender.render(plan, history, candidates)
    pad = doc["padding_tokens"]
    assert doc["prompt"] == "<|endoftext|>" * pad + expected.prompt
    assert doc["prompt_tokens"] == expected.prompt_tokens + pad and doc["prompt_tokens"] % 32 == 1
    texts = [c["scored_text"] for c in doc["candidates"]]
    assert texts == scored_texts(expected) and all(t.strip() for t in texts)
    # query likelihood: each candidate's own prompt, and the query scored after every one
    result = CliRunner().invoke(
        app,
        ["prompts", "render", "likelihood_query", "--history", "50", "--query", "space war",
         "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {c["scored_text"] for c in doc["candidates"]} == {" space war"}
    assert doc["padding_tokens"] == 0  # its prompts are never aligned (GENREC_LIKELIHOOD_ALIGN)
    for c in doc["candidates"]:
        assert c["title"] in c["prompt"] and c["prompt"].endswith("<|im_start|>assistant\nTags:")


@pytest.mark.slow
def test_demo_json_every_mode_on_a_fresh_home(tmp_path, settings):
    """`genrec demo --json`: model, catalog ingest, engine, all four modes; stdout clean."""
    env = {"GENREC_HOME": str(tmp_path), "GENREC_MODEL_CACHE": str(settings.models_dir)}
    out = run_cli("demo", "--json", env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    doc = one_json_document(out.stdout)
    assert doc["history"] == ["Star Wars", "Empire Strikes Back, The", "Return of the Jedi"]
    assert [r["mode"] for r in doc["results"]] == ["rank", "likelihood", "generate", "describe"]
    for r in doc["results"]:
        ids = [i["id"] for i in r["items"]]
        assert len(ids) == 5 == len(set(ids)) and not {"50", "172", "181"} & set(ids)
    assert "ingest" in out.stderr  # progress went to stderr
