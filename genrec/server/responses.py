"""The assistant text of a chat completion, rendered by a response template (prompts/response*.j2)
or as JSON. Both come as pieces (header, one per item, footer) so that a stream sends one item per
delta and the pieces joined are exactly the non-streamed content."""

from __future__ import annotations

import importlib.resources
import json
import re
from pathlib import Path
from typing import Any

import jinja2

from genrec.data.item import Item
from genrec.errors import ConfigError
from genrec.schema import Recommendation, RecommendedItem

MACROS = ("header", "item", "footer")
_NAME = re.compile(r"^response[\w-]*$")

# The JSON content of response_format json_object / json_schema, for clients to validate against.
RECOMMENDATIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "recommendations": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "title": {"type": "string"},
                    "score": {"type": "number"},
                    "rank": {"type": "integer"},
                    "grounded_by": {"type": "string"},
                    "confidence": {"type": "number"},
                    "from_candidates": {"type": "boolean"},
                    # why it was picked (genrec.explain): evidence, strongest first
                    "because": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "kind": {"type": "string"},
                                "weight": {"type": "number"},
                            },
                            "required": ["kind", "weight"],
                        },
                    },
                    "reason": {"type": ["string", "null"]},
                    "explanation": {"type": ["string", "null"]},
                },
                "required": ["id", "title", "score", "rank", "grounded_by"],
            },
        }
    },
    "required": ["recommendations"],
}


def prompts_dir() -> Path:
    """prompts/ as shipped in the package (genrec.prompt_templates), else the source checkout's."""
    try:
        found = Path(str(importlib.resources.files("genrec.prompt_templates")))
        if (found / "response.j2").is_file():
            return found
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parents[2] / "prompts"


def _oneline(text: str) -> str:
    # Catalog text is data: it must not be able to add lines to genrec's parseable list.
    return " ".join(text.split())


class ResponseRenderer:
    """One response template, loaded once and checked for the three macros."""

    def __init__(self, name: str = "response", *directories: Path | None):
        """`directories` are searched first (e.g. settings.prompts_dir), then genrec's prompts/."""
        if not _NAME.match(name):
            raise ConfigError(
                f"response template {name!r} must be named response*, found in prompts/{name}.j2"
            )
        search = [str(d) for d in directories if d is not None] + [str(prompts_dir())]
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(search),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,
        )
        try:
            module = env.get_template(f"{name}.j2").make_module({})
        except jinja2.TemplateNotFound:
            raise ConfigError(f"response template prompts/{name}.j2 does not exist") from None
        except jinja2.TemplateError as exc:
            raise ConfigError(f"response template prompts/{name}.j2 is broken: {exc}") from exc
        missing = [m for m in MACROS if not callable(getattr(module, m, None))]
        if missing:
            raise ConfigError(f"response template prompts/{name}.j2 lacks macros: {missing}")
        self.name = name
        self._module = module

    def pieces(self, result: Recommendation, catalog: dict[str, Item] | None = None) -> list[str]:
        """`catalog` (the items by ID; default: the records the result carries) adds year,
        genres, category and description."""
        m = self._module
        catalog = result.catalog_items if catalog is None else catalog
        items = [_context(it, catalog.get(it.id)) for it in result.items]
        out = [str(m.header(result, len(items)))]
        out += [str(m.item(it)) for it in items]
        out.append(str(m.footer(result)))
        return [p for p in out if p]


def _context(it: RecommendedItem, item: Item | None) -> dict[str, Any]:
    year = item.attributes.get("year") if item else None
    return {
        **it.model_dump(),
        "title": _oneline(it.title),
        "id": _oneline(it.id),
        "year": year,
        "genres": [_oneline(t) for t in item.tags] if item else [],
        "category": _oneline(item.category) if item else "",
        "description": _oneline(item.description) if item else "",
        # evidence text is catalog text too: one line each, data in the answer
        "reason": _oneline(it.reason or ""),
        "explanation": _oneline(it.explanation or ""),
    }


def json_pieces(result: Recommendation) -> list[str]:
    """`{"recommendations": [...]}` as pieces: opening, one per item, closing."""
    items = [json.dumps(it.model_dump(), ensure_ascii=False) for it in result.items]
    return (
        ['{"recommendations": [']
        + [(", " if i else "") + item for i, item in enumerate(items)]
        + ["]}"]
    )


def check_json_schema(schema: dict[str, Any] | None) -> str | None:
    """Why genrec's JSON content cannot satisfy the caller's schema, or None when it can."""
    if not schema:
        return None
    try:
        import jsonschema
    except ImportError:  # optional: without it the schema is taken on trust
        return None
    sample = {
        "recommendations": [
            {
                "id": "1",
                "title": "Title",
                "score": 0.5,
                "rank": 1,
                "grounded_by": "label",
                "confidence": 1.0,
                "from_candidates": True,
            }
        ]
    }
    try:
        jsonschema.validate(sample, schema)
    except jsonschema.SchemaError as exc:
        return f"the schema is not a valid JSON schema: {exc.message}"
    except jsonschema.ValidationError as exc:
        where = "/" + "/".join(str(p) for p in exc.absolute_path)
        return (
            "genrec's JSON content is {'recommendations': [{id, title, score, rank, grounded_by, "
            "confidence, from_candidates}]} and the schema rejects it "
            f"(`{exc.validator}` at {where}); see the README for genrec's schema"
        )
    return None
