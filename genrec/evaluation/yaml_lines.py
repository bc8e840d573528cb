"""Where a value sits in a YAML file: the line to name when pydantic rejects it."""

from __future__ import annotations

from typing import Any

import yaml


def is_union_tag(part: Any) -> bool:
    # pydantic puts union member names ("str", "function-after[...]") into locations.
    return isinstance(part, str) and (part in {"str", "int", "float", "none"} or "[" in part)


def line_of(node: yaml.Node | None, loc: list) -> int:
    """The 1-based line of the deepest YAML node along `loc` that exists."""
    line = node.start_mark.line + 1 if node is not None else 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for key, value in node.value:
                if key.value == part:
                    nxt = value
                    line = key.start_mark.line + 1
                    break
            if nxt is None:
                break
            node = nxt
            if not isinstance(node, yaml.MappingNode | yaml.SequenceNode):
                line = node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                break
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line
