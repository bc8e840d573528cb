"""Catalog items a user names in free text: ``id: X``, a quoted title (also 「」《》), or a title
in the text (a Chinese title anywhere in it: Chinese puts no spaces between words).

The catalog lookups are sync (Chroma and the embedder): callers in an event loop run these in a
worker thread.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from genrec.data.item import Item
from genrec.titles import fold, title_key


class CatalogLookup(Protocol):
    """The part of genrec.index.CatalogIndex a conversation needs."""

    def get(self, ids: Sequence[str]) -> list[Item]: ...
    def resolve(self, ref: str) -> Item | None: ...
    def search(self, text: str | None = None, *, k: int = 20) -> list: ...


# Only an explicit "id: 50" names a catalog ID; "item #2", "number 2" are ordinals into the
# previous answer (references.find_references), never IDs.
_ID_MENTION = re.compile(r"\bid\s*[:=#]\s*([\w.\-]+)", re.I)
MAX_QUOTED = 20
_QUOTED = re.compile(r"[\"“”«「《『]([^\"“”«»「」《》『』]{2,200})[\"“”»」》』]")
_HAN = re.compile(r"[\u3400-\u9fff]")


def _mentions_title(text: str, folded_text: str, title: str) -> bool:
    core = title_key(title)
    if not core:
        return False
    full = fold(title)
    if _HAN.search(core):
        # Chinese has no spaces between words: a title of four or more characters named
        # anywhere in the text counts ("我喜欢森屿 男士纯棉圆领短袖T恤 夏季新款").
        return len(core) >= 4 and core in folded_text
    if " " in full and f" {full} " in f" {folded_text} ":
        return True  # "Heat 1995", "Usual Suspects, The"
    if " " not in core:
        # One word ("Heat"): only capitalised, and not opening a sentence, so neither "something
        # with heat" nor "Kids movies, please" names a film.
        if len(core) < 4:
            return False
        word = re.escape(core.capitalize())
        for m in re.finditer(rf"(?<!\w){word}(?!\w)", text):
            if text[: m.start()].rstrip()[-1:] not in ("", ".", "!", "?", "\n"):
                return True
        return False
    return f" {core} " in f" {folded_text} "


@dataclass
class Mentions:
    items: list[Item] = field(default_factory=list)

    def add(self, found: Iterable[Item]) -> None:
        known = {it.id for it in self.items}
        for it in found:
            if it.id not in known:
                self.items.append(it)
                known.add(it.id)


def items_named(text: str, catalog: CatalogLookup, *, search_k: int = 20) -> list[Item]:
    """Catalog items a user names in free text: `id: X`, a quoted title, or a title in the text
    among the items most similar to it."""
    found = Mentions()
    ids = [m.group(1) for m in _ID_MENTION.finditer(text)]
    if ids:
        found.add(catalog.get(ids))
    # Each quoted phrase costs a look-up and maybe a search: a message gets MAX_QUOTED of them
    # (a person quotes a few titles; 2,000 quotes would cost seconds of catalog work).
    for m in itertools.islice(_QUOTED.finditer(text), MAX_QUOTED):
        item = catalog.resolve(m.group(1).strip())
        if item is None:
            core = title_key(m.group(1))
            hits = catalog.search(m.group(1), k=5)
            item = next((h.item for h in hits if title_key(h.item.title) == core), None)
        if item is not None:
            found.add([item])
    if text.strip():
        folded = fold(text)
        hits = [h.item for h in catalog.search(text, k=search_k)]
        named = [it for it in hits if _mentions_title(text, folded, it.title)]
        # "Star Wars" inside "Return of the Jedi (Star Wars...)": keep the longest names only.
        cores = {it.id: title_key(it.title) for it in named}
        found.add(
            it
            for it in named
            if not any(
                o.id != it.id and cores[it.id] in cores[o.id] and cores[it.id] != cores[o.id]
                for o in named
            )
        )
    return found.items


def display_title(item: Item) -> str:
    """'Heat (1995)': the title with its year, as people say it."""
    year = item.attributes.get("year")
    if year is None or f"({year})" in item.title:
        return item.title
    return f"{item.title} ({year})"
