"""A chat conversation -> one RecommendRequest.

- The last user message is the query.
- Items named earlier join the history (oldest first): titles or `id:` references in user turns,
  and the numbered lists of genrec's own earlier answers (`N. Title [id: ID]`, or their JSON form).
- Ordinal references in a user message ("the second one", "#2", "the first two", "the last one")
  point into the list of the answer before it (so do its items named by title); in the last
  message they are rewritten into titles in the query. Only the items picked join the history: the
  rest of that answer is excluded, not repeated. An answer the user did not pick from joins the
  history whole. A reference after a negation ("not the first one", "except #3") excludes the item.
- "newer" / "older" in the last message, next to items it points at, narrows to items with a
  later / earlier `year` attribute than theirs.
- System and developer messages reach the prompt only through the request's `system` slot; they
  never change what may be recommended (candidates always come from the catalog index).

The catalog lookups are sync (Chroma and the embedder), so the server runs `map_conversation` in a
worker thread.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pydantic import ValidationError

from genrec.catalog import Item
from genrec.errors import InvalidRequest
from genrec.schema import RecommendRequest
from genrec.server.openai_schema import ChatCompletionRequest, ChatMessage
from genrec.server.profiles import Profile


class CatalogLookup(Protocol):
    """The part of genrec.index.CatalogIndex the conversation mapping needs."""

    def get(self, ids: Sequence[str]) -> list[Item]: ...
    def resolve(self, ref: str) -> Item | None: ...
    def search(self, text: str | None = None, *, k: int = 20) -> list: ...


# --- genrec's own answers ----------------------------------------------------------------------

_LINE = re.compile(r"^\s*(\d{1,3})[.)]\s+(.+?)\s*$")
_ID_TAIL = re.compile(r"\s*\[id:\s*([^\]]+?)\s*\]\s*$")


@dataclass(frozen=True)
class Listed:
    rank: int
    title: str
    id: str | None


def parse_answer(text: str) -> list[Listed]:
    """The items of one of genrec's earlier answers: its JSON content or its numbered list."""
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


# --- ordinal references ------------------------------------------------------------------------

_WORDS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "tenth": 10, "last": -1, "final": -1,
}  # fmt: skip
_COUNTS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8}
_NOUN = (
    r"(?:one|ones|item|items|movie|movies|film|films|title|titles|pick|picks|choice|"
    r"suggestion|suggestions|recommendation|recommendations|option|options|entry|entries)"
)
_ORD = (
    r"(first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|last|final|"
    r"\d{1,2}(?:st|nd|rd|th))"
)
_ORDINAL_PATTERNS = [
    # "the first two", "the top 3"
    re.compile(
        rf"\b(?:the\s+)?(?:first|top)\s+(two|three|four|five|six|seven|eight|\d{{1,2}})"
        rf"(?:\s+{_NOUN})?\b",
        re.I,
    ),
    # "the second one", "2nd movie", "the last one", "the third"
    re.compile(rf"\b(?:the\s+)?{_ORD}\s+{_NOUN}\b", re.I),
    re.compile(rf"\bthe\s+{_ORD}\b", re.I),
    # "#2", "number 2", "no. 2"
    re.compile(r"(?:#\s?|\bnumber\s+|\bno\.\s*)(\d{1,2})\b", re.I),
]
_NEGATION = re.compile(
    r"\b(?:not|no|except|without|never|hate|hated|dislike|disliked|didn'?t|don'?t|avoid|skip|"
    r"besides|other than|apart from|instead of)\b",
    re.I,
)
_CLAUSE_END = re.compile(r"[.;!?,]|\bbut\b|\band\b", re.I)


@dataclass(frozen=True)
class Reference:
    start: int
    end: int
    positions: tuple[int, ...]  # 0-based positions in the previous list
    negated: bool


def _position(word: str, size: int) -> int | None:
    w = word.lower()
    n = _WORDS.get(w)
    if n is None:
        digits = re.match(r"\d+", w)
        n = int(digits.group()) if digits else None
    if n is None:
        return None
    if n == -1:
        return size - 1 if size else None
    return n - 1 if 1 <= n <= size else None


def _negated(text: str, start: int) -> bool:
    """Whether a negation sits in the same clause, just before the reference."""
    before = text[max(0, start - 40) : start]
    cut = [m.end() for m in _CLAUSE_END.finditer(before)]
    clause = before[cut[-1] :] if cut else before
    return bool(_NEGATION.search(clause))


def find_references(text: str, size: int) -> list[Reference]:
    """Ordinal references into a list of `size` items, left to right, never overlapping."""
    found: list[Reference] = []
    taken: list[tuple[int, int]] = []
    for i, pattern in enumerate(_ORDINAL_PATTERNS):
        for m in pattern.finditer(text):
            if any(m.start() < e and s < m.end() for s, e in taken):
                continue
            word = m.group(1)
            if i == 0:
                count = _COUNTS.get(word.lower()) or int(word)
                positions = tuple(range(min(count, size)))
            else:
                pos = _position(word, size)
                positions = () if pos is None else (pos,)
            if not positions:
                continue
            taken.append((m.start(), m.end()))
            found.append(Reference(m.start(), m.end(), positions, _negated(text, m.start())))
    return sorted(found, key=lambda r: r.start)


# --- items named in user text ------------------------------------------------------------------

# Only an explicit "id: 50" names a catalog ID; "item #2", "number 2" are ordinals into the
# previous answer (find_references), never IDs.
_ID_MENTION = re.compile(r"\bid\s*[:=#]\s*([\w.\-]+)", re.I)
_QUOTED = re.compile(r"[\"“”«]([^\"“”«»]{2,200})[\"“”»]")
_YEAR_OR_ALT = re.compile(r"\s*\([^)]*\)\s*$")
_ARTICLE = re.compile(r"^(.*),\s*(the|a|an|les|la|le|il|el|die|der|das|los|las)$", re.I)
_NON_WORD = re.compile(r"[^\w]+")


def normalize(text: str) -> str:
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def title_core(title: str) -> str:
    """'Usual Suspects, The (1995)' -> 'the usual suspects'."""
    core = title.strip()
    while True:
        stripped = _YEAR_OR_ALT.sub("", core)
        if stripped == core or not stripped:
            break
        core = stripped
    m = _ARTICLE.match(core)
    if m:
        core = f"{m.group(2)} {m.group(1)}"
    return normalize(core)


def _mentions_title(text: str, norm_text: str, title: str) -> bool:
    core = title_core(title)
    if not core:
        return False
    full = normalize(title)
    if " " in full and f" {full} " in f" {norm_text} ":
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
    return f" {core} " in f" {norm_text} "


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
    for m in _QUOTED.finditer(text):
        item = catalog.resolve(m.group(1).strip())
        if item is None:
            core = title_core(m.group(1))
            hits = catalog.search(m.group(1), k=5)
            item = next((h.item for h in hits if title_core(h.item.title) == core), None)
        if item is not None:
            found.add([item])
    if text.strip():
        norm = normalize(text)
        hits = [h.item for h in catalog.search(text, k=search_k)]
        named = [it for it in hits if _mentions_title(text, norm, it.title)]
        # "Star Wars" inside "Return of the Jedi (Star Wars...)": keep the longest names only.
        cores = {it.id: title_core(it.title) for it in named}
        found.add(
            it
            for it in named
            if not any(
                o.id != it.id and cores[it.id] in cores[o.id] and cores[it.id] != cores[o.id]
                for o in named
            )
        )
    return found.items


# --- the mapping -------------------------------------------------------------------------------


@dataclass
class Mapped:
    request: RecommendRequest
    referenced: list[str]  # item IDs the last message pointed at in the previous answer


def _resolve_listed(listed: list[Listed], catalog: CatalogLookup) -> list[Item | None]:
    by_id = {it.id: it for it in catalog.get([x.id for x in listed if x.id])}
    out: list[Item | None] = []
    for x in listed:
        item = by_id.get(x.id) if x.id else None
        if item is None and x.title:
            item = catalog.resolve(x.title)
        out.append(item)
    return out


def _dedup_keep_last(ids: list[str]) -> list[str]:
    """Keep each ID once, at its latest position: the history is oldest first."""
    seen: set[str] = set()
    out: list[str] = []
    for i in reversed(ids):
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out[::-1]


def _system_text(messages: list[ChatMessage]) -> str | None:
    parts = [m.text.strip() for m in messages if m.role in ("system", "developer")]
    text = "\n\n".join(p for p in parts if p)
    return text or None


def display_title(item: Item) -> str:
    """'Heat (1995)': the title with its year, as people say it."""
    year = item.attributes.get("year")
    if year is None or f"({year})" in item.title:
        return item.title
    return f"{item.title} ({year})"


@dataclass
class Turn:
    """What one user message says about the catalog."""

    query: str
    referenced: list[str]  # picked from the previous answer (by ordinal or by title)
    negated: list[str]  # pointed at after a negation
    named: list[str]  # other catalog items named in the text
    recency: dict | None = None  # "newer"/"older" than the items it points at, as a filter


_NEWER = re.compile(r"\b(?:newer|more recent)\b", re.I)
_OLDER = re.compile(r"\b(?:older)\b", re.I)


def recency_filter(text: str, items: Iterable[Item]) -> dict | None:
    """ "more like the second one, but newer" -> {"year": {"$gt": <its year>}}: only for items
    with an integer `year` attribute, and only relative to items the message points at."""
    years = [y for it in items if isinstance(y := it.attributes.get("year"), int)]
    if not years:
        return None
    if _NEWER.search(text):
        return {"year": {"$gt": max(years)}}
    if _OLDER.search(text):
        return {"year": {"$lt": min(years)}}
    return None


def read_turn(text: str, previous: list[Item | None], catalog: CatalogLookup) -> Turn:
    refs = find_references(text, len(previous)) if previous else []
    pieces: list[str] = []
    cursor = 0
    referenced: list[str] = []
    negated: list[str] = []
    for ref in refs:
        items = [previous[p] for p in ref.positions if previous[p] is not None]
        pieces.append(text[cursor : ref.start])
        pieces.append(" and ".join(display_title(it) for it in items) or text[ref.start : ref.end])
        cursor = ref.end
        (negated if ref.negated else referenced).extend(it.id for it in items)
    query = "".join(pieces) + text[cursor:]
    found = [it for it in items_named(text, catalog) if it.id not in negated]
    named = [it.id for it in found]
    # Items of the previous answer named by title count as picks from it.
    listed = {it.id: it for it in previous if it is not None}
    referenced += [i for i in named if i in listed and i not in referenced]
    named = [i for i in named if i not in listed]
    pointed = [listed[i] for i in referenced if i in listed] + [
        it for it in found if it.id in named
    ]
    return Turn(query, referenced, negated, named, recency_filter(text, pointed))


def map_conversation(
    body: ChatCompletionRequest, profile: Profile, catalog: CatalogLookup
) -> Mapped:
    messages = body.messages
    last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=None)

    history: list[str] = list(body.history or [])
    exclude: list[str] = list(body.exclude or [])
    previous: list[Item | None] = []  # the latest answer's items, in its order
    pending: list[str] = []  # items of answers the user has not picked from (yet)
    query: str | None = None
    referenced: list[str] = []
    recency: dict | None = None
    for i, msg in enumerate(messages):
        if msg.role == "assistant" and (last_user is None or i < last_user):
            listed = parse_answer(msg.text)
            if listed:
                previous = _resolve_listed(listed, catalog)
                pending += [it.id for it in previous if it is not None]
        elif msg.role == "user":
            turn = read_turn(msg.text, previous, catalog)
            exclude += turn.negated
            if turn.referenced or turn.negated:
                # Picking from an answer: the rest of it is not wanted again, nor as taste.
                exclude += [p for p in pending if p not in turn.referenced]
            else:
                history += pending  # an answer the conversation goes on from is taste
            pending = []
            history += turn.referenced + turn.named
            if i == last_user:
                query, referenced, recency = turn.query, turn.referenced, turn.recency
                break
    history += pending
    excluded = set(exclude)
    history = [i for i in _dedup_keep_last(history) if i not in excluded][-200:]
    exclude = list(dict.fromkeys(exclude))
    system = _system_text(messages)
    request = _build(body, profile, query, history, exclude, system, recency)
    return Mapped(request, referenced)


_PARAM_OF = {"query": "messages", "system": "messages", "temperature": "temperature"}


def _build(
    body: ChatCompletionRequest,
    profile: Profile,
    query: str | None,
    history: list[str],
    exclude: list[str],
    system: str | None,
    recency: dict | None = None,
) -> RecommendRequest:
    mode = body.mode or profile.mode
    template = body.template or (profile.template if mode == profile.mode else None)
    # Every source of filters only narrows: they are ANDed.
    parts = [f for f in (profile.filters, body.filters, recency) if f]
    filters = None if not parts else parts[0] if len(parts) == 1 else {"$and": parts}
    try:
        return RecommendRequest(
            query=query,
            history=history,
            k=body.k or profile.k,
            candidates=body.candidates or profile.candidates,
            filters=filters,
            exclude=exclude,
            mode=mode,
            template=template,
            system=system,
            user_id=body.user_id or body.user,
            temperature=body.temperature or 0.0,
            seed=body.seed,
            max_tokens=body.token_limit,
        )
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]]
        param = _PARAM_OF.get(loc[0], loc[0]) if loc else "messages"
        msg = err["msg"].removeprefix("Value error, ")
        if not loc:  # the request-level check: no query and no history
            msg = "send a user message (the query) or a `history` of items"
        raise InvalidRequest(f"{param}: {msg}", param=param) from None
