"""Text -> catalog IDs. What the LM wrote becomes an item only through one of these steps, tried in
order; each result says which step found it and how sure it is:

=============  ==============================================================  ==============
grounded_by    how                                                             confidence
=============  ==============================================================  ==============
``label``      rank mode: the candidate's label token itself                   1.0
``score``      likelihood mode: the candidate whose own text was scored         1.0
``exact``      the text equals a candidate's title as shown in the prompt      1.0
``normalized`` equal after case, punctuation, articles and a year are ignored  0.95
``fuzzy``      rapidfuzz similarity to a candidate's title >= 88 (of 100)      score / 100
``embedding``  nearest item by embedding similarity (>= a threshold)           the similarity
=============  ==============================================================  ==============

Text that passes none of them is *unmatched*: counted and reported, never turned into an ID. Text
that grounds to an item already returned (or to the history / excluded items) is a *duplicate*.

Grounding is given what it needs of the catalog (a :class:`Catalog`: texts to vectors, the
nearest items to a text), never the index itself; the Recommender passes its catalog index.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from rapidfuzz import fuzz, process

from genrec.data.item import Item
from genrec.schema import GroundedBy
from genrec.titles import match_key

FUZZY_CUTOFF = 88.0
EMBEDDING_CUTOFF = 0.55  # all-MiniLM cosine; below this a "match" is mostly noise
_ROMAN = re.compile(r"(ii|iii|iv|v|vi|vii|viii|ix|x)")


class Hit(Protocol):
    """One search result: an item and its similarity (higher is more similar)."""

    item: Item
    score: float


class Catalog(Protocol):
    """What grounding needs of the catalog (genrec.index.CatalogIndex provides it)."""

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...

    def search(
        self,
        text: str | None = None,
        *,
        k: int = 20,
        where: dict | None = None,
        exclude: Sequence[str] = (),
    ) -> Sequence[Hit]: ...


def normalize(text: str) -> str:
    """Case, accents, punctuation, a leading or trailing article and a year do not matter:
    ``"The Godfather (1972)"``, ``"Godfather, The"`` and ``"godfather"`` are all ``"godfather"``
    (genrec.titles.match_key, one rule with the index's and the conversations')."""
    return match_key(text)


@dataclass(frozen=True)
class Match:
    item: Item
    grounded_by: GroundedBy
    confidence: float
    from_candidates: bool = True


@dataclass
class Grounded:
    matches: list[Match] = field(default_factory=list)  # distinct items, in output order
    unmatched: list[str] = field(default_factory=list)
    duplicates: int = 0


class Grounder:
    """Grounds LM text against a request's candidates (and, last, the catalog by embedding).

    ``shown`` are the titles as the prompt displayed them (parallel to ``candidates``).
    ``embedding_scope`` is where the embedding step looks: ``"candidates"`` keeps results inside
    the candidate list (generate mode), ``"catalog"`` searches the whole index (never returning
    ``banned`` IDs: the history and the request's exclusions).
    """

    def __init__(
        self,
        candidates: Sequence[Item],
        shown: Sequence[str] | None = None,
        *,
        catalog: Catalog | None = None,
        banned: Iterable[str] = (),
        embedding_scope: Literal["candidates", "catalog"] = "candidates",
        where: dict | None = None,
    ) -> None:
        self.candidates = list(candidates)
        self.shown = list(shown) if shown is not None else [c.title for c in self.candidates]
        self.catalog = catalog
        self.banned = set(banned)
        self.scope = embedding_scope
        self.where = where
        self._exact: dict[str, int] = {}
        for i, (item, title) in enumerate(zip(self.candidates, self.shown, strict=True)):
            self._exact.setdefault(title, i)
            self._exact.setdefault(item.title, i)
        self._norm: dict[str, int] = {}
        for i, (item, title) in enumerate(zip(self.candidates, self.shown, strict=True)):
            for t in (title, item.title):
                self._norm.setdefault(normalize(t), i)
        self._norm_keys = list(self._norm)
        self._vectors = None

    def ground(self, text: str) -> Match | None:
        text = text.strip().strip("\"'").strip()
        if not text:
            return None
        if (i := self._exact.get(text)) is not None:
            return Match(self.candidates[i], "exact", 1.0)
        key = normalize(text)
        if key and (i := self._norm.get(key)) is not None:
            return Match(self.candidates[i], "normalized", 0.95)
        if key and self._norm_keys:
            best = process.extractOne(
                key, self._norm_keys, scorer=fuzz.token_sort_ratio, score_cutoff=FUZZY_CUTOFF
            )
            # "Toy Story 2" is not a typo of "Toy Story": numbers must agree.
            if best is not None and _numbers(best[0]) == _numbers(key):
                return Match(self.candidates[self._norm[best[0]]], "fuzzy", round(best[1] / 100, 4))
        return self._by_embedding(text)

    def _by_embedding(self, text: str) -> Match | None:
        if self.catalog is None:
            return None
        if self.scope == "catalog":
            hits = self.catalog.search(
                text=text, k=1, where=self.where, exclude=sorted(self.banned)
            )
            if hits and hits[0].score >= EMBEDDING_CUTOFF:
                item = hits[0].item
                inside = any(c.id == item.id for c in self.candidates)
                return Match(item, "embedding", _unit(hits[0].score), from_candidates=inside)
            return None
        import numpy as np

        if self._vectors is None:
            self._vectors = np.asarray(
                self.catalog.embed([c.embedding_text() for c in self.candidates]),
                dtype=np.float32,
            )
        if not len(self._vectors):
            return None
        q = np.asarray(self.catalog.embed([text])[0], dtype=np.float32)
        norms = np.linalg.norm(self._vectors, axis=1) * np.linalg.norm(q) + 1e-9
        sims = self._vectors @ q / norms
        i = int(np.argmax(sims))
        if float(sims[i]) < EMBEDDING_CUTOFF:
            return None
        return Match(self.candidates[i], "embedding", _unit(float(sims[i])))

    def ground_all(self, outputs: Sequence[str], k: int) -> Grounded:
        """Ground each output in order, keeping at most k distinct items outside ``banned``."""
        result = Grounded()
        seen = set(self.banned)
        for text in outputs:
            if len(result.matches) >= k:
                break
            m = self.ground(text)
            if m is None:
                result.unmatched.append(text)
            elif m.item.id in seen:
                result.duplicates += 1
            else:
                seen.add(m.item.id)
                result.matches.append(m)
        return result


def ground_description(
    catalog: Catalog,
    text: str,
    k: int,
    *,
    banned: Iterable[str] = (),
    where: dict | None = None,
    candidates: Sequence[Item] = (),
) -> list[Match]:
    """describe mode: the k catalog items nearest the description (history/exclusions never)."""
    hits = catalog.search(text=text, k=k, where=where, exclude=sorted(set(banned)))
    inside = {c.id for c in candidates}
    return [
        Match(h.item, "embedding", _unit(h.score), from_candidates=h.item.id in inside)
        for h in hits
    ]


def _numbers(normalized: str) -> set[str]:
    """Digits and roman numerals: what tells a sequel from its original."""
    return {w for w in normalized.split() if w.isdigit() or _ROMAN.fullmatch(w)}


def _unit(x: float) -> float:
    return round(min(1.0, max(0.0, float(x))), 4)
