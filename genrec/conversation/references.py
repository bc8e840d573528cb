"""Ordinal references into genrec's previous answer: "the second one", "#2", "the first two",
"the last one"; a reference after a negation ("not the first one", "except #3") is marked so."""

from __future__ import annotations

import re
from dataclasses import dataclass

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
