"""Which scripts a text is written in, and how it splits into words for lexical search.

Scripts, not languages: Han characters say "zh", kana "ja", Hangul "ko", Latin letters "en"
(English stands for every Latin-script language here: the only use is to tell whether an
embedding model can read a text, and the English-only model reads Latin script at best).

Segmentation: runs of Han characters go through jieba (its search mode, which also yields the
words inside long compounds: 羽绒服 -> 羽绒, 羽绒服); everything else is split on non-word
characters. Words are lower-cased; punctuation and a short list of Chinese function words
(的, 我, 想, 买 ...) are dropped, since they say nothing about a product.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Iterable

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af]")
_LATIN = re.compile(r"[A-Za-z]")
_WORD = re.compile(r"\w+")
# Function words and shopping filler a shopper types around the need ("我想买..."): they occur
# in queries, not in product text, and would only add noise to BM25.
STOPWORDS = frozenset(
    "的 了 和 与 及 或 是 在 有 我 你 他 她 它 我们 "
    "想 想要 要 买 购买 一件 一个 一双 一些 件 个 双 "
    "给 穿 用 的话 吗 呢 吧 啊 请 帮 帮我 推荐 找 找个 有没有 什么 哪些 一下 适合 比较 最 很 "
    "the a an and or of for to in on with i want buy me some".split()
)

_jieba_lock = threading.Lock()
_jieba_ready = False


def languages_of(text: str) -> list[str]:
    """The scripts present, as language codes, most used first (a Han character counts as two
    letters: it carries about a word); [] for none (digits only)."""
    counts = Counter(
        {
            "zh": 2 * len(_HAN.findall(text)),
            "ja": len(_KANA.findall(text)),
            "ko": len(_HANGUL.findall(text)),
            "en": len(_LATIN.findall(text)),
        }
    )
    return [lang for lang, n in counts.most_common() if n > 0]


def language_mix(texts: Iterable[str]) -> dict[str, int]:
    """How many texts are mainly in each script (a catalog's language mix)."""
    counts: Counter[str] = Counter()
    for text in texts:
        if found := languages_of(text):
            counts[found[0]] += 1
    return dict(counts.most_common())


def _jieba():  # noqa: ANN202 - jieba has no types
    global _jieba_ready
    import jieba

    if not _jieba_ready:
        with _jieba_lock:
            if not _jieba_ready:
                jieba.setLogLevel(logging.WARNING)
                jieba.initialize()  # ~1 s: loads its dictionary once per process
                _jieba_ready = True
    return jieba


def words(text: str) -> list[str]:
    """The words of ``text`` for BM25 (see the module docstring)."""
    out: list[str] = []
    if _HAN.search(text):
        pieces = _jieba().lcut_for_search(text)
    else:
        pieces = _WORD.findall(text)
    for piece in pieces:
        for word in _WORD.findall(piece.lower()):  # drops punctuation, splits "t恤/男"
            if word not in STOPWORDS:
                out.append(word)
    return out
