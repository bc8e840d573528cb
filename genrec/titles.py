"""One way to compare titles, for the catalog index, conversations and grounding.

Three strengths of one pipeline, each the one before it plus a step:

==============  =====================================================  ===========================
function        what stops mattering                                   ``"Usual Suspects, The
                                                                       (1995)"``
==============  =====================================================  ===========================
``fold``        case, punctuation and spacing                          ``"usual suspects the
                                                                       1995"``
``title_key``   + trailing parenthesised groups (a year, an            ``"the usual suspects"``
                alternative title); a trailing article moves to the
                front (``"Godfather, The"`` = ``"The Godfather"``)
``match_key``   + accents, a trailing bare year, a leading article     ``"usual suspects"``
==============  =====================================================  ===========================

The index resolves a title by ``title_key`` (so "The Godfather" finds "Godfather, The (1972)"), a
conversation spots titles in user text with ``fold`` and ``title_key``, and grounding compares LM
output to candidates with ``match_key``, the loosest: what the LM writes is noisier than what a
person types, and a candidate list is small enough that collisions are rare.
"""

from __future__ import annotations

import re
import unicodedata

# Articles that catalogs move to the end ("Godfather, The", "Vie en rose, La").
ARTICLES = ("the", "a", "an", "les", "la", "le", "il", "el", "die", "der", "das", "los", "las")

_ARTICLE_ALT = "|".join(ARTICLES)
_TRAILING_ARTICLE = re.compile(rf"^(.*),\s*({_ARTICLE_ALT})$", re.I)
_LEADING_ARTICLE = re.compile(rf"^(?:{_ARTICLE_ALT}) (?=\S)")
_TRAILING_PARENS = re.compile(r"\s*\([^)]*\)\s*$")
# A year after the title, as LMs write it ("Heat 1995"); titles that are only a year stay whole.
_TRAILING_YEAR = re.compile(r"(?<=\S) (?:1[89]\d\d|20\d\d)$")
_NON_WORD = re.compile(r"[^\w]+")


def fold(text: str) -> str:
    """Lower case, every run of punctuation or space one space: ``"Heat!! (1995)"`` ->
    ``"heat 1995"``."""
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def title_key(title: str) -> str:
    """The title itself: ``"Usual Suspects, The (1995)"`` and ``"the usual suspects"`` ->
    ``"the usual suspects"``; ``"Shanghai Triad (Yao a yao...) (1995)"`` -> ``"shanghai triad"``."""
    core = title.strip()
    while True:
        stripped = _TRAILING_PARENS.sub("", core)
        if stripped == core or not stripped:
            break
        core = stripped
    m = _TRAILING_ARTICLE.match(core)
    if m:
        core = f"{m.group(2)} {m.group(1)}"
    return fold(core)


def match_key(text: str) -> str:
    """What grounding compares: ``"The Godfather (1972)"``, ``"Godfather, The"``,
    ``"GODFATHER!!"`` and ``"godfather 1972"`` are all ``"godfather"``; ``"Amélie"`` is
    ``"amelie"``."""
    # Accents go, letters stay (unlike an ASCII round trip, which drops "東京" and "æ" whole).
    bare = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    key = _TRAILING_YEAR.sub("", title_key(bare))
    return _LEADING_ARTICLE.sub("", key)
