"""Metadata filters: a Chroma ``where`` given by a caller, checked before it reaches the store.

Two checks, both naming the caller's field (``filters`` on a request, ``where`` on the index):

- :func:`bounds_problem`, what one request may ask of the store: at most ``MAX_NODES``
  conditions, operators and listed values, ``$and``/``$or`` nested at most ``MAX_DEPTH`` levels,
  strings of at most ``MAX_STRING`` characters of valid Unicode, numbers that are finite and fit
  in 64 bits. It
  runs at the wire (the request models), iteratively and stopping at the first excess, so even a
  huge filter is refused in microseconds. Without it Chroma fails on its own: 1,000 ``$and``
  clauses are "Expression tree is too large", 40,000 ``$in`` values "too many SQL variables",
  ``$and`` nested 63 deep "Invalid where clause", an integer of 2**63 likewise.
- :func:`validate_where`, the bounds plus the grammar (Chroma's own check and the few things it
  lets through that its query then refuses). It runs when a request is planned, before any engine
  work.

Whatever still gets past both and is refused by the store is a 400 all the same (the index's
store turns any error of a filtered query into one), never a 500.
"""

from __future__ import annotations

import math
from typing import Any

from genrec.errors import InvalidRequest

MAX_NODES = 256  # conditions, $and/$or operators and values listed in $in/$nin, together
MAX_DEPTH = 8  # a condition is level 1; each enclosing $and/$or adds a level
MAX_STRING = 1000  # characters in one metadata key or one compared string
_INT64 = (-(2**63), 2**63 - 1)
_LOGICAL = ("$and", "$or")
_SCALAR_OPERATORS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$contains", "$not_contains")


def bounds_problem(where: Any) -> str | None:
    """Why ``where`` asks too much of the store (a sentence without the field name), or None."""
    return _walk(where, grammar=False)


def where_problem(where: Any) -> str | None:
    """Why ``where`` is not a filter genrec can run (bounds and grammar), or None."""
    if not isinstance(where, dict) or not where:
        return "must be a non-empty JSON object"
    problem = _walk(where, grammar=True)
    if problem:
        return problem
    from chromadb.api.types import validate_where as chroma_validate

    try:
        chroma_validate(where)
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None


def validate_where(where: Any, param: str = "where") -> dict | None:
    """Check a Chroma ``where`` filter up front so a bad one is a 400 naming ``param``."""
    if where is None:
        return None
    problem = where_problem(where)
    if problem:
        raise InvalidRequest(f"bad {param}: {problem}", param=param)
    return where


def _walk(where: Any, *, grammar: bool) -> str | None:
    """One pass, iterative (a deep filter cannot exhaust the stack), stopping at the first excess:
    every logical operator and every condition counts one node, every value listed for $in/$nin
    one more."""
    too_many = f"has more than {MAX_NODES} conditions, operators and listed values"
    nodes = 0
    stack: list[tuple[Any, int]] = [(where, 1)]
    while stack:
        clause, level = stack.pop()
        if level > MAX_DEPTH:
            return f"nests $and/$or more than {MAX_DEPTH} levels deep"
        if not isinstance(clause, dict) or not clause:
            nodes += 1  # no condition: the grammar check says what belongs here
            if isinstance(clause, list):
                return "each $and/$or entry must be an object (a condition)"
            if not isinstance(clause, dict) and (problem := _value_problem(clause)):
                return problem
            continue
        for key, value in clause.items():
            nodes += 1
            if nodes > MAX_NODES:
                return too_many
            if problem := _key_problem(key):
                return problem
            if key in _LOGICAL and isinstance(value, list):
                if nodes + len(value) > MAX_NODES:  # each entry is at least one node
                    return too_many
                stack.extend((entry, level + 1) for entry in value)
                continue
            if grammar and isinstance(key, str) and key.startswith("$") and key not in _LOGICAL:
                return f"unknown operator {key[:40]!r} in place of a metadata key; use $and, $or"
            if isinstance(value, dict):  # {"$gt": 1990}: a condition per operator
                nodes += max(len(value) - 1, 0)
                if nodes > MAX_NODES:
                    return too_many
                pairs = list(value.items())
            else:
                pairs = [("$eq", value)]
            for op, operand in pairs:
                if problem := _key_problem(op):
                    return problem
                if not isinstance(operand, list):
                    if problem := _value_problem(operand):
                        return problem
                    continue
                if grammar and op in _SCALAR_OPERATORS:
                    return f"{op} compares with one value, not a list; use $in for a list"
                nodes += len(operand)
                if nodes > MAX_NODES:
                    return too_many
                for item in operand:
                    if problem := _value_problem(item):
                        return problem
    return None


def _key_problem(key: Any) -> str | None:
    if isinstance(key, str) and len(key) > MAX_STRING:
        return f"a key is longer than {MAX_STRING} characters"
    if isinstance(key, str) and (problem := unicode_problem(key)):
        return f"a key {problem}"
    return None


def unicode_problem(text: str) -> str | None:
    """JSON may escape a lone surrogate ("\\ud800"), which no tokenizer, embedder or store can
    encode: such a string is refused at the edge rather than failing deep inside (a 500). Used
    for every string of the request models too (genrec.schema.Text)."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode text (it holds a lone surrogate, such as an unpaired \\ud800)"
    return None


def _value_problem(value: Any) -> str | None:
    """A compared value is a string, a boolean or a finite 64-bit number."""
    if isinstance(value, bool) or value is None:
        return None  # None: Chroma's grammar check names it
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            return f"a value is longer than {MAX_STRING} characters"
        if problem := unicode_problem(value):
            return f"a value {problem}"
        return None
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            return "an integer does not fit in 64 bits"
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "a number is not finite"
    if isinstance(value, (dict, list)):
        return "a compared value must be a string, a number or a boolean, not an object or a list"
    return None
