"""A query text's vector, and whether the collection's embedder can read it.

A query in a script the model was not built for (Chinese against the English MiniLM) is logged
as a warning (:meth:`TextQueries.language_warning`), once per distinct query: the vectors of the
last 512 distinct queries are remembered.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from genrec.embeddings import Embedder
from genrec.languages import languages_of

log = logging.getLogger("genrec.index")

REMEMBERED = 512  # distinct query texts


class TextQueries:
    def __init__(self, embedder: Embedder, collection: str) -> None:
        self.embedder = embedder
        self.collection = collection
        self._lock = threading.Lock()
        self._cache: dict[str, np.ndarray] = {}

    def language_warning(self, text: str) -> str | None:
        """Why the collection's embedder may not understand ``text`` (None when it can)."""
        if self.embedder.reads(text):
            return None
        langs = ", ".join(languages_of(text))
        return (
            f"the query is in {langs}, but collection {self.collection!r} was embedded with "
            f"{self.embedder.model_id}, which reads only {', '.join(self.embedder.languages or [])}"
            f": expect poor matches; ingest the catalog with "
            f"GENREC_EMBEDDING_MODEL=multilingual-e5-small into a new collection"
        )

    def forget(self) -> None:
        with self._lock:
            self._cache.clear()

    def vector(self, text: str) -> np.ndarray:
        vector = self._cache.get(text)
        if vector is None:
            if warning := self.language_warning(text):
                log.warning(warning)
            vector = self.embedder.encode([text], query=True)[0]
            with self._lock:
                if len(self._cache) >= REMEMBERED:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[text] = vector
        return vector
