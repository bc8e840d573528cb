"""Ordinal references into genrec's previous answer: "the second one", "#2", "the first two",
"the last one"; a reference after a negation ("not the first one", "except #3") is marked so.
Chinese too: "第二个" / "第2款", "前两个", "最后一个", "不要第一个", "除了第三件"."""

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
# Chinese: no word boundaries; a numeral is 一..十 (两 for counts) or digits, and a measure word
# (个 款 件 双 条 项 部 本 ...) or nothing follows.
_ZH_DIGITS = {
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_ZH_NUM = r"(十[一二三四五六七八九]?|[一二三四五六七八九]十?|\d{1,2})"
_ZH_MEASURE = r"(?:个|款|件|双|条|项|部|本|台|套|只|样|种|位)?"
_ZH_PATTERNS = [
    (re.compile(rf"前\s*(两|{_ZH_NUM[1:-1]})\s*{_ZH_MEASURE}"), "first_n"),
    (re.compile(rf"第\s*{_ZH_NUM}\s*{_ZH_MEASURE}"), "nth"),
    (re.compile(rf"最后(?:一{_ZH_MEASURE}|那{_ZH_MEASURE})"), "last"),
]
_ZH_NEGATION = re.compile(r"不要|不是|不想要|不喜欢|除了|别|排除|不考虑|去掉")
_ZH_CLAUSE_END = re.compile(r"[，。；！？、,.;!?]|但是|不过|而且")


def _zh_number(word: str) -> int:
    if word.isdigit():
        return int(word)
    if word.startswith("十"):
        return 10 + (_ZH_DIGITS[word[1]] if len(word) > 1 else 0)
    if word.endswith("十"):
        return _ZH_DIGITS[word[0]] * 10
    return _ZH_DIGITS[word]


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
    cut += [m.end() for m in _ZH_CLAUSE_END.finditer(before)]
    clause = before[max(cut) :] if cut else before
    return bool(_NEGATION.search(clause) or _ZH_NEGATION.search(clause))


def _zh_references(text: str, size: int) -> list[Reference]:
    found: list[Reference] = []
    taken: list[tuple[int, int]] = []
    for pattern, kind in _ZH_PATTERNS:
        for m in pattern.finditer(text):
            if any(m.start() < e and s < m.end() for s, e in taken):
                continue
            if kind == "first_n":
                positions = tuple(range(min(_zh_number(m.group(1)), size)))
            elif kind == "last":
                positions = (size - 1,) if size else ()
            else:
                n = _zh_number(m.group(1))
                positions = (n - 1,) if 1 <= n <= size else ()
            if not positions:
                continue
            taken.append((m.start(), m.end()))
            found.append(Reference(m.start(), m.end(), positions, _negated(text, m.start())))
    return found


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
    found += [
        r
        for r in _zh_references(text, size)
        if not any(r.start < f.end and f.start < r.end for f in found)
    ]
    return sorted(found, key=lambda r: r.start)
