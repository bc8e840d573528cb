"""Evidence of content retrieval (genrec.retrieval.content, genrec.index.catalog_index).

The dense score is ``v_item . unit(unit(profile) + text)`` with ``profile = sum_i w_i h_i``
(the decayed history), so it splits exactly into one term per history item,
``w_i (h_i . v_item) / |profile|``, and one for the query text, ``text . v_item`` (the common
``1 / |unit(profile) + text|`` does not change the shares). Only the last ``RECENT`` history
items are read: the profile halves every ``history_half_life`` (3) items, so older ones weigh
under 0.4 % together. The query's part names the words of the query that occur in the item's
own text (what the lexical channel matched), else the whole query (a dense match).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from genrec.data.item import Item
from genrec.explain.parts import DENSE, SEP, TERMS, Key, Table, empty
from genrec.index import CatalogIndex
from genrec.index.lexical import lexical_text
from genrec.languages import words
from genrec.retrieval.base import RetrievalQuery

RECENT = 24  # history items read (8 half-lives)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")
_STOP = frozenset(
    "a an and are as at be by for from i in is it me of on or so some something that the "
    "this to want with like watch movie movies film films please recommend".split()
)


def matched_terms(text: str, item: Item) -> list[str]:
    """The query's words (genrec.languages: jieba for Chinese) that occur in the item's text."""
    haystack = lexical_text(item).lower()
    found: list[str] = []
    for word in words(text):
        if word in found or word in _STOP or (len(word) < 2 and not _CJK.search(word)):
            continue
        if _CJK.search(word) or re.search(rf"\b{re.escape(word)}", haystack):
            if word in haystack:
                found.append(word)
    return found


def query_key(matched: list[str], text: str) -> str:
    """The key of a query part: the matched words (lexical), else the query itself (dense)."""
    return TERMS + SEP.join(matched) if matched else DENSE + text


def content_parts(index: CatalogIndex, query: RetrievalQuery, candidates: Sequence[Item]) -> Table:
    history = query.history_ids[-RECENT:]
    if not history and not query.text:
        return empty()
    vectors = index.vectors([*history, *(c.id for c in candidates)])
    found = [c.id for c in candidates if c.id in vectors]
    if not found:
        return empty()
    items = np.stack([vectors[i] for i in found])
    keys: list[Key] = []
    rows: list[np.ndarray] = []
    at = [j for j, h in enumerate(history) if h in vectors]  # an item met twice: both count
    if at:
        n = len(history)
        weights = 0.5 ** ((n - 1 - np.asarray(at)) / index.history_half_life)
        h_mat = np.stack([vectors[history[j]] for j in at])
        norm = float(np.linalg.norm(weights @ h_mat))
        if norm > 0:
            keys += [("history", history[j]) for j in at]
            rows.append(weights[:, None] * (h_mat @ items.T) / norm)
    if query.text:
        # one row per distinct query key (the words matched differ by item), zero elsewhere
        dense = items @ index.text_vector(query.text)
        by_key: dict[str, np.ndarray] = {}
        for j, item in enumerate(c for c in candidates if c.id in vectors):
            key = query_key(matched_terms(query.text, item), query.text)
            by_key.setdefault(key, np.zeros(len(found)))[j] = dense[j]
        keys += [("query", key) for key in by_key]
        rows.append(np.stack(list(by_key.values())))
    if not keys:
        return empty()
    return Table.of_terms(keys, found, np.concatenate(rows))
