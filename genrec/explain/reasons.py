"""One short reason per item, in plain words, from its evidence: what the chat answer, the CLI
and the JSON ``reason`` say. Titles and matched words are quoted as data (one line, bounded):
a title full of instructions is still just a title in the reason."""

from __future__ import annotations

from collections.abc import Sequence

from genrec.languages import languages_of
from genrec.schema import Evidence

MAX_TITLES = 2  # titles named in one reason
MAX_CHARS = 80  # of one quoted title or query

_EN = {
    "history": "because you watched {titles}",
    "user": "because you enjoyed {titles}",
    "query_terms": "matches {terms}",
    "query_dense": "close to what you asked for",
    "popular": "popular in the catalog",
    "trending": "trending now",
    "fallback": "no specific evidence (a fallback pick)",
    "lm_up": "the model moved it up from #{before}",
    "and": " and ",
    "join": "; ",
}
_ZH = {
    "history": "因为你看过{titles}",
    "user": "因为你喜欢{titles}",
    "query_terms": "符合{terms}",
    "query_dense": "与你的需求相近",
    "popular": "目录中的热门之选",
    "trending": "近期热门",
    "fallback": "没有具体依据(备选)",
    "lm_up": "模型将其从第{before}位提前",
    "and": "和",
    "join": ";",
}


def _quoted(text: str, lang: str) -> str:
    text = " ".join(text.split())
    if len(text) > MAX_CHARS:
        text = text[: MAX_CHARS - 1] + "…"
    return f"《{text}》" if lang == "zh" else text


def language(texts: Sequence[str]) -> str:
    """zh when the text (the user's query, else the items' titles) is mainly Chinese, else en."""
    for text in texts:
        if found := languages_of(text):
            return "zh" if found[0] == "zh" else "en"
    return "en"


def reason(because: Sequence[Evidence], lang: str = "en") -> str:
    words = _ZH if lang == "zh" else _EN
    parts: list[str] = []
    for kind in ("history", "user"):
        titles = [_quoted(e.title or e.item_id or "", lang) for e in because if e.kind == kind]
        if titles:
            parts.append(words[kind].format(titles=words["and"].join(titles[:MAX_TITLES])))
    for e in because:
        if e.kind == "query":
            if e.terms:
                quoted = ", ".join(f"'{_quoted(t, 'en')}'" for t in e.terms[:3])
                parts.append(words["query_terms"].format(terms=quoted))
            else:
                parts.append(words["query_dense"])
        elif e.kind in ("popular", "trending", "fallback"):
            parts.append(words[e.kind])
        elif e.kind == "lm" and e.rank_before and e.rank_after and e.rank_after < e.rank_before:
            parts.append(words["lm_up"].format(before=e.rank_before))
    return words["join"].join(dict.fromkeys(parts))
