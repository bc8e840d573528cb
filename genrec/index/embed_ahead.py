"""Embedding the next batch while the store writes this one, in a child process.

Chroma's ``upsert`` holds the GIL for its whole run (measured: a Python thread beside a
1,024-item upsert is stalled for all of its ~1 s), so a writer thread cannot overlap embedding
and writing: they took turns. A child process embeds instead, with its own copy of the model,
while the parent writes; the two then share the cores rather than a lock. Starting the child
costs a second or two (imports and the model's session), so small writes embed in process.

The child is ``python -m genrec.index.embed_ahead`` on pipes (not multiprocessing, which would
import the caller's main module again in the child): texts go in as JSON, vectors come back as
``.npy``, one request in flight. If the child cannot start or dies, the parent embeds the batch
itself, so a write never fails for the child's sake (the model's own errors then surface in the
parent, as without it).
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Protocol

import numpy as np

from genrec.embeddings import Embedder
from genrec.embeddings_e5 import E5_MODEL

log = logging.getLogger(__name__)

AHEAD_MIN_ITEMS = 5_000  # below this the child's start-up costs more than the overlap saves


class Pending(Protocol):
    def result(self) -> np.ndarray: ...


class Embed(Protocol):
    def submit(self, texts: Sequence[str]) -> Pending: ...


class _Ready:
    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors

    def result(self) -> np.ndarray:
        return self.vectors


class _InProcess:
    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder

    def submit(self, texts: Sequence[str]) -> Pending:
        return _Ready(self.embedder.encode(list(texts)))


def _send(out: IO[bytes], payload: bytes) -> None:
    out.write(len(payload).to_bytes(8, "little") + payload)
    out.flush()


def _receive(src: IO[bytes]) -> bytes | None:
    head = src.read(8)
    if len(head) < 8:
        return None
    size = int.from_bytes(head, "little")
    payload = src.read(size)
    return payload if len(payload) == size else None


class _Child:
    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        args = [embedder.model_id, embedder.requested_backend, str(embedder.cache_dir)]
        self.proc: subprocess.Popen | None = subprocess.Popen(
            [sys.executable, "-m", "genrec.index.embed_ahead", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

    def submit(self, texts: Sequence[str]) -> Pending:
        texts = list(texts)
        if self.proc is not None:
            try:
                assert self.proc.stdin is not None
                _send(self.proc.stdin, json.dumps(texts).encode())
                return _FromChild(self, texts)
            except OSError:
                self._lost()
        return _Ready(self.embedder.encode(texts))

    def _lost(self) -> None:
        if self.proc is not None:
            code = self.proc.poll()
            log.warning("the embedding process stopped (exit %s); embedding in process", code)
            self.proc.kill()
            self.proc = None

    def close(self) -> None:
        if self.proc is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # the child's loop ends at end of input
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None


class _FromChild:
    def __init__(self, child: _Child, texts: list[str]) -> None:
        self.child, self.texts = child, texts

    def result(self) -> np.ndarray:
        proc = self.child.proc
        payload = _receive(proc.stdout) if proc is not None and proc.stdout else None
        if payload is None:
            self.child._lost()
            return self.child.embedder.encode(self.texts)
        return np.load(io.BytesIO(payload), allow_pickle=False)


@contextmanager
def embedding_ahead(embedder: Embedder, total: int) -> Iterator[Embed]:
    """Something to ``submit`` texts to and take their vectors from (``.result()``): a child
    process for ``total`` >= AHEAD_MIN_ITEMS items with the plain embedder; in process otherwise
    (a subclass, such as the scale bench's stand-in, keeps its own ``encode``; e5 counts the
    texts it truncates, which the ingest report warns about, in the embedder that ran it)."""
    if total < AHEAD_MIN_ITEMS or type(embedder) is not Embedder or embedder.model_id == E5_MODEL:
        yield _InProcess(embedder)
        return
    try:
        child = _Child(embedder)
    except OSError as exc:
        log.warning("cannot start the embedding process (%s); embedding in process", exc)
        yield _InProcess(embedder)
        return
    try:
        yield child
    finally:
        child.close()


def main() -> None:
    """The child: texts in, vectors out, until its input ends."""
    from pathlib import Path

    model, backend, cache_dir = sys.argv[1:4]
    embedder = Embedder(model_path=model, backend=backend, cache_dir=Path(cache_dir))  # type: ignore[arg-type]
    src, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # anything printed by libraries stays off the vectors' pipe
    while (payload := _receive(src)) is not None:
        buf = io.BytesIO()
        np.save(buf, embedder.encode(json.loads(payload)), allow_pickle=False)
        _send(out, buf.getvalue())


if __name__ == "__main__":
    main()
