"""Metadata filters (Chroma ``where``) as callers send them: checked at the edge."""

from __future__ import annotations

from typing import Any

from genrec.errors import InvalidRequest


def validate_where(where: Any, param: str = "where") -> dict | None:
    """Check a Chroma ``where`` filter up front so a bad one is a 400 naming ``param``."""
    if where is None:
        return None
    if not isinstance(where, dict) or not where:
        raise InvalidRequest(f"{param} must be a non-empty JSON object", param=param)
    from chromadb.api.types import validate_where as chroma_validate

    try:
        chroma_validate(where)
    except (ValueError, TypeError) as exc:
        raise InvalidRequest(f"bad {param}: {exc}", param=param) from exc
    return where
