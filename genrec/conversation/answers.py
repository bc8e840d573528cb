"""Reading genrec's own earlier answers back: their numbered lists or their JSON content."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

_LINE = re.compile(r"^\s*(\d{1,3})[.)]\s+(.+?)\s*$")
_ID_TAIL = re.compile(r"\s*\[id:\s*([^\]]+?)\s*\]\s*$")


@dataclass(frozen=True)
class Listed:
    rank: int
    title: str
    id: str | None


def parse_answer(text: str) -> list[Listed]:
    """The items of one of genrec's earlier answers: its JSON content or its numbered list
    (``N. Title [id: ID]``)."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            doc = json.loads(stripped)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and isinstance(doc.get("recommendations"), list):
            out = []
            for i, it in enumerate(doc["recommendations"], 1):
                if isinstance(it, dict) and (it.get("id") or it.get("title")):
                    ident = it.get("id")
                    out.append(
                        Listed(
                            int(it.get("rank") or i),
                            str(it.get("title") or ""),
                            None if ident is None else str(ident),
                        )
                    )
            return out
    out = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        rest = m.group(2)
        idm = _ID_TAIL.search(rest)
        ident = idm.group(1) if idm else None
        title = rest[: idm.start()] if idm else rest
        title = title.split(" — ")[0].strip("*_ ")  # drop the genres genrec's lines carry
        out.append(Listed(int(m.group(1)), title, ident))
    return out
