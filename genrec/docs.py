"""The generated reference: `make docs` writes it, `make docs-check` names every stale file.

    python -m genrec.docs [--check]   # from the repository root

Read from the code, so the docs follow it: the settings' Field descriptions, the HTTP app's routes
and wire models (built without starting an engine), the CLI's own help, the suite models, the
modes, templates and engine constraints, and eval/baselines/*.results.json (with
eval/results-meta.yaml for what the JSON lacks: machine, load, published numbers). A field's text
is its description, else its source comment, else docs/field-notes.yaml. Seconds, no engine.
"""

from __future__ import annotations

import argparse
import inspect
import io
import json
import re
import sys
import tempfile
import tokenize
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer.main
from pydantic import BaseModel

from genrec.cli import app as cli_app
from genrec.docs_results import HEADER, comparison, eval_results, load_yaml, md_cell
from genrec.engines import base as engine_base
from genrec.evaluation.suite import Suite
from genrec.events.model import Event
from genrec.modes import MODES
from genrec.prompts import PromptRegistry
from genrec.schema import Recommendation, RecommendedItem, RecommendRequest, Usage, UserSummary
from genrec.server.app import create_app
from genrec.server.openai_schema import ChatCompletionRequest
from genrec.server.profiles import Profile, default_profiles
from genrec.settings import Settings

NOTES_FILE = "docs/field-notes.yaml"  # route lines and field texts the code does not hold
# Classes whose comment blocks open sections (title: the first sentence; lines after the first,
# a note on the next field): in Settings a capitalised block after a blank line, in the chat
# request any block.
_SECTIONED = {"Settings": True, "ChatCompletionRequest": False}


def _source_notes(cls: type) -> dict[str, tuple[str, str]]:
    """field -> (the section it sits in, its own comment), read from the class source: a
    field's comment trails it or stands right above it; sections as _SECTIONED says."""
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0] - 1] = tok.string.lstrip("#").strip()
    notes: dict[str, tuple[str, str]] = {}
    section, block, after_blank = "", [], False
    for i, line in enumerate(lines):
        text = line.strip()
        if text.startswith("#"):
            after_blank = after_blank if block else not lines[i - 1].strip()
            block.append(comments.get(i, ""))
            continue
        m = re.match(r"^    (\w+): ", line)
        if m:
            needs_blank = _SECTIONED.get(cls.__name__)
            opens = block and (not needs_blank or (after_blank and block[0][:1].isupper()))
            if opens and needs_blank is not None:
                section = re.split(r"(?<=\w)[.:] ", block[0], maxsplit=1)[0].rstrip(".")
                block = block[1:]
            notes[m.group(1)] = (section, comments.get(i) or " ".join(block))
        if not line.startswith("     "):  # a continuation line keeps the block for its field
            block = []
    return notes


def _type(p: dict[str, Any]) -> str:
    if "$ref" in p:
        return p["$ref"].rsplit("/", 1)[-1]
    if "enum" in p:
        return " | ".join(f"`{v}`" for v in p["enum"])
    if "const" in p:
        return f"`{p['const']}`"
    if "anyOf" in p:
        kinds = [_type(q) for q in p["anyOf"] if q.get("type") != "null"]
        return " or ".join(dict.fromkeys(kinds)) or "null"
    t = p.get("type", "any")
    if t == "array":
        return f"list of {_type(p.get('items', {}))}"
    if t == "string" and p.get("format") == "path":
        return "path"
    return {"object": "object", "integer": "integer", "number": "number"}.get(t, t)


def _bounds(p: dict[str, Any]) -> str:
    parts = []
    for q in [p, *p.get("anyOf", [])]:
        for key, value in sorted(q.items(), key=lambda kv: kv[0].startswith("max")):
            if m := re.fullmatch(r"(min|max|exclusiveMin)(imum|Length|Items)", key):
                what = {"imum": "", "Length": "chars ", "Items": "items "}[m[2]]
                sign = {"min": ">=", "max": "<=", "exclusiveMin": ">"}[m[1]]
                parts.append(f"{what}{sign} {value}")
    return ", ".join(dict.fromkeys(parts))


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return "its defaults"
        return "computed" if isinstance(value, Path) else f"`{json.dumps(value, default=str)}`"
    if field.is_required():
        return "required"
    return "–" if field.default is None else f"`{json.dumps(field.default, default=str)}`"


def _table(model: type[BaseModel], notes: dict[str, str], *, env: bool = False) -> str:
    """One table per section of the source's section comments."""
    schema = model.model_json_schema(mode="validation" if env else "serialization")
    props, comments = schema.get("properties", {}), _source_notes(model)
    groups: dict[str, list[str]] = {}
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        key = field.alias or name
        section, comment = comments.get(name, ("", ""))
        text = field.description or comment or notes.get(key, "")
        cells = [f"`GENREC_{name.upper()}`" if env else f"`{key}`", _type(props.get(key, {}))]
        cells += [_default(field), _bounds(props.get(key, {})), text]
        groups.setdefault(section, []).append("| " + " | ".join(md_cell(c) for c in cells) + " |")
    out, first = [], "env" if env else "field"
    for section, rows in groups.items():
        out += [f"\n**{section}**\n"] if section else []
        out += [f"| {first} | type | default | bounds | meaning |", "|---|---|---|---|---|", *rows]
    return "\n".join(out) + "\n"


# -- the pages --------------------------------------------------------------------------------


def configuration(root: Path) -> str:
    return (
        HEADER.format(src="genrec/settings.py")
        + "# Configuration\n\nOne settings object, `genrec.settings.Settings`, built at the edge "
        "and passed down. Each field reads the environment variable `GENREC_<NAME>`, or `name` "
        "in a TOML file named by `GENREC_CONFIG` (or `--config`); the environment wins over "
        "the file. A dict field takes JSON in the environment.\n\n" + _table(Settings, {}, env=True)
    )


def _default_settings() -> Settings:
    """The defaults, whatever GENREC_* says here: model_construct reads no environment."""
    return Settings.model_construct(home=Path(tempfile.gettempdir()) / "genrec-docs")


def http_api(root: Path) -> str:
    notes = load_yaml(root, NOTES_FILE)
    models, routes = notes["models"], notes["routes"]

    def table(model: type[BaseModel]) -> str:
        request = model in (ChatCompletionRequest, RecommendRequest)
        return _table(model, models["request"] if request else models.get(model.__name__, {}))

    settings = _default_settings()
    spec = create_app(settings).openapi()  # no lifespan: nothing starts
    out = [HEADER.format(src="the FastAPI app and the wire models"), "# HTTP API\n"]
    out += ["`genrec serve` (OpenAPI: `GET /openapi.json`, `/docs`).\n"]
    out += ["| method | route | body | what |", "|---|---|---|---|"]
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            ref = op.get("requestBody", {}).get("content", {}).get("application/json", {})
            body = _type(ref.get("schema", {})) if ref else ""
            what = routes.get(f"{method.upper()} {path}", op.get("summary", ""))
            out.append(f"| {method.upper()} | `{path}` | {body} | {md_cell(what)} |")
    out += ["\nBad input is a 400 in OpenAI's error shape naming the field (never a 422)."]
    out += ["\n## `POST /v1/chat/completions`: ChatCompletionRequest\n"]
    out += ["An unknown field is a 400 naming it.\n", table(ChatCompletionRequest)]
    out += ["## `POST /v1/recommendations`: RecommendRequest\n", table(RecommendRequest)]
    out += ["## The result: Recommendation\n"]
    out.append(
        "`POST /v1/recommendations` returns it. A chat answer carries its `items` as the "
        "top-level `recommendations`, and under `genrec` an account of the request as "
        "understood (docs/server.md).\n"
    )
    out.append(table(Recommendation))
    out += [f"### {m.__name__}\n\n" + table(m) for m in (RecommendedItem, Usage, UserSummary)]
    out.append("## `POST /v1/events`: one event of `events`\n")
    out.append("At most 1,000 events a batch; each is checked on its own.\n\n" + table(Event))
    out.append("## Profiles (`model`)\n")
    out.append(
        "With the default settings; add or override them in `GENREC_PROFILES` (JSON) or "
        "`[profiles.NAME]` in the config file (fields of the Profile model below).\n"
    )
    out += ["| profile | mode | template | k | candidates | description |", "|---" * 6 + "|"]
    for p in default_profiles(settings).values():
        tpl = p.template or "the mode's default"
        row = [f"`{p.name}`", p.mode, tpl, p.k, p.candidates, p.description]
        out.append("| " + " | ".join(md_cell(c) for c in row) + " |")
    out.append("\n" + table(Profile))
    return "\n".join(out)


def cli(root: Path) -> str:
    out = [HEADER.format(src="the CLI's own help"), "# CLI\n"]

    def walk(cmd: Any, path: list[str], parent: Any) -> None:
        ctx = cmd.context_class(cmd, info_name=path[-1], parent=parent, terminal_width=100)
        cmd.rich_markup_mode = None  # typer's plain formatter, not rich: stable text
        out.append(f"## `{' '.join(path)}`\n\n```\n{cmd.get_help(ctx).rstrip()}\n```\n")
        for name in cmd.list_commands(ctx) if hasattr(cmd, "list_commands") else []:
            sub = cmd.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                walk(sub, [*path, name], ctx)

    walk(typer.main.get_command(cli_app), ["genrec"], None)
    return "\n".join(out)


def eval_suite(root: Path) -> str:
    suite_notes = load_yaml(root, NOTES_FILE)["models"]["suite"]
    out = [HEADER.format(src="genrec/evaluation/suite.py"), "# Suite format\n"]
    out.append(
        "A suite is a YAML file (`eval/*.yaml`); `genrec eval validate SUITE` checks one without "
        "an engine. Unknown keys are errors. The dataset's format chooses the cases: "
        "leave-one-out over an interaction log (`movielens`, `ml-100k`), ready-made cases "
        "(`jsonl`), the stated-need protocol (`protocol.split: stated-need`), or a query set "
        "whose queries each have several relevant items (`queries`); the runner, cells, "
        "baselines, metrics and reports are the same for all.\n"
    )
    for model in (Suite,):
        module = sys.modules[model.__module__]
        # the models a suite file is made of: the root and what its fields refer to
        parts = [model.__name__, *sorted(model.model_json_schema().get("$defs", {}))]
        for name in parts:
            part = getattr(module, name)
            doc = inspect.getdoc(part) if part.__doc__ else ""
            out.append(f"## {name}\n\n" + (f"{doc}\n\n" if doc else "") + _table(part, suite_notes))
    return "\n".join(out)


def modes(root: Path) -> str:
    out = [HEADER.format(src="genrec/modes, prompts/ and genrec/engines/base.py"), "# Modes\n"]
    registry = PromptRegistry(_default_settings())
    out += ["| mode | default template | what |", "|---|---|---|"]
    for name, mode in MODES.items():
        doc = (sys.modules[type(mode).__module__].__doc__ or "").strip().split("\n\n")[0]
        doc = doc.split(":", 1)[-1].strip() if doc.startswith(name) else doc
        out.append(f"| `{name}` | {registry.default_for(name).name} | {md_cell(doc)} |")
    out += ["\n# Templates (`prompts/`)\n", "| template | modes | labels | version | what |"]
    out.append("|---|---|---|---|---|")
    for t in registry.list():
        m = t.meta
        row = [f"`{m.name}`", ", ".join(m.modes), m.labels, m.version, m.description]
        out.append("| " + " | ".join(md_cell(c) for c in row) + " |")
    out += ["\n# Engine output constraints (`genrec.engines.base`)\n"]
    bullets = dict(
        re.findall(r":class:`(\w+)`: (.+?)(?=\n- |\n\n)", engine_base.__doc__ or "", re.S)
    )
    out += ["| constraint | fields | what |", "|---|---|---|"]
    for c in typing.get_args(engine_base.Constraint):
        fields = ", ".join(f"`{f}`" for f in c.__dataclass_fields__)
        what = re.sub(r"\s+", " ", bullets.get(c.__name__, inspect.getdoc(c) or "")).rstrip(";.")
        out.append(f"| `{c.__name__}` | {fields} | {md_cell(what)} |")
    return "\n".join(out) + "\n"


# -- evaluation results ------------------------------------------------------------------------

_START, _END = "<!-- generated:comparison -->", "<!-- /generated:comparison -->"


def readme(root: Path) -> str:
    """README.md with its comparison block regenerated (the rest is hand-written)."""
    text = (root / "README.md").read_text()
    head, rest = text.split(_START, 1)
    return head + _START + "\n" + comparison(root) + _END + rest.split(_END, 1)[1]


TARGETS: dict[str, Callable[[Path], str]] = {
    "docs/reference/configuration.md": configuration,
    "docs/reference/http-api.md": http_api,
    "docs/reference/cli.md": cli,
    "docs/reference/eval-suite.md": eval_suite,
    "docs/reference/modes.md": modes,
    "eval/README.md": eval_results,
    "README.md": readme,
}


def stale(root: Path) -> list[str]:
    return [
        rel
        for rel, make in TARGETS.items()
        if not (root / rel).is_file() or (root / rel).read_text() != make(root)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m genrec.docs", description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail naming each stale file")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the repository root")
    args = parser.parse_args(argv)
    if args.check:
        bad = stale(args.root)
        for rel in bad:
            print(f"STALE {rel}: run `make docs` and commit it", file=sys.stderr)
        return 1 if bad else 0
    for rel, make in TARGETS.items():
        path = args.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        text = make(args.root)
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {rel}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
