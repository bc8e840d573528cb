"""Embedding the next batch while the store writes this one, in child processes.

Chroma's ``upsert`` holds the GIL for its whole run (measured: a Python thread beside a
1,024-item upsert is stalled for all of its ~1 s), so a writer thread cannot overlap embedding
and writing: they took turns. Child processes embed instead, each with its own copy of the
model and one ONNX Runtime thread, one per core, each a share of the next batch, while the
parent writes this one: embedding is four fifths of an ingest's CPU (int8 MiniLM, short
titles: 1.9 ms per item on one thread, Chroma's write 0.45 ms), so the cores stay busy with it.
Starting a child costs a second or two (imports and the model's session), so small writes
embed in process.

A child is ``python -c "from genrec.index.embed_ahead import main; main()"`` on pipes (not
multiprocessing, which would import the caller's main module again in the child): texts go in
as JSON, vectors come back as ``.npy``, one request in flight per child. If a child cannot start
or dies, the parent embeds its share itself, so a write never fails for a child's sake (the
model's own errors then surface in the parent, as without it).
"""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Protocol

import numpy as np

from genrec.embeddings import STATIC_MODEL, Embedder
from genrec.embeddings_e5 import E5_MODEL

log = logging.getLogger(__name__)

AHEAD_MIN_ITEMS = 5_000  # below this the child's start-up costs more than the overlap saves
_CHILD = "from genrec.index.embed_ahead import main; main()"
AHEAD_MAX_PROCESSES = 4  # a 22M-parameter model: past a few children the writes bind


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
    """One embedding process (one ONNX Runtime thread); ``proc`` None once it is lost."""

    def __init__(self, embedder: Embedder, threads: int) -> None:
        args = [embedder.model_id, embedder.requested_backend, str(embedder.cache_dir)]
        self.proc: subprocess.Popen | None = subprocess.Popen(
            # -c, not -m: genrec.index imports this module, and runpy warns (on the user's
            # terminal) when a module it is asked to run is already imported
            [sys.executable, "-c", _CHILD, *args, str(threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # torch (a model ONNX cannot run) takes its thread count from here
            env={**os.environ, "OMP_NUM_THREADS": str(threads)},
        )

    def send(self, texts: list[str]) -> bool:
        if self.proc is None:
            return False
        try:
            assert self.proc.stdin is not None
            _send(self.proc.stdin, json.dumps(texts).encode())
            return True
        except OSError:
            self.lost()
            return False

    def receive(self) -> np.ndarray | None:
        proc = self.proc
        payload = _receive(proc.stdout) if proc is not None and proc.stdout else None
        if payload is None:
            self.lost()
            return None
        return np.load(io.BytesIO(payload), allow_pickle=False)

    def lost(self) -> None:
        if self.proc is not None:
            code = self.proc.poll()
            log.warning("an embedding process stopped (exit %s); embedding in process", code)
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


class _Pool:
    """Children that embed a batch between them, a contiguous share each (one thread per
    child: int8 MiniLM embeds 530 items per CPU second on one ONNX thread, 420 on two)."""

    def __init__(self, embedder: Embedder, processes: int) -> None:
        self.embedder = embedder
        self.children: list[_Child] = []
        try:
            for _ in range(processes):
                self.children.append(_Child(embedder, threads=1))
        except OSError:
            self.close()
            raise

    def submit(self, texts: Sequence[str]) -> Pending:
        texts = list(texts)
        size = -(-len(texts) // len(self.children))  # ceil: every share but the last is full
        shares = [texts[i * size : (i + 1) * size] for i in range(len(self.children))]
        pairs = zip(self.children, shares, strict=True)
        sent = [bool(share) and child.send(share) for child, share in pairs]
        return _FromPool(self, shares, sent)

    def close(self) -> None:
        for child in self.children:
            child.close()


class _FromPool:
    def __init__(self, pool: _Pool, shares: list[list[str]], sent: list[bool]) -> None:
        self.pool, self.shares, self.sent = pool, shares, sent

    def result(self) -> np.ndarray:
        parts = []
        for child, share, sent in zip(self.pool.children, self.shares, self.sent, strict=True):
            if not share:
                continue
            got = child.receive() if sent else None
            # a child that could not take its share or died: the parent embeds it
            parts.append(got if got is not None else self.pool.embedder.encode(share))
        return np.vstack(parts)


@contextmanager
def embedding_ahead(
    embedder: Embedder, total: int, *, processes: int | None = None
) -> Iterator[Embed]:
    """Something to ``submit`` texts to and take their vectors from (``.result()``): child
    processes for ``total`` >= AHEAD_MIN_ITEMS items with the plain embedder; in process otherwise
    (a subclass, such as the scale bench's stand-in, keeps its own ``encode``; e5 counts the
    texts it truncates, which the ingest report warns about, in the embedder that ran it; the
    static model embeds faster than a pipe carries its vectors).
    ``processes``: how many children (None: :func:`ahead_processes`)."""
    in_process = type(embedder) is not Embedder or embedder.model_id in (E5_MODEL, STATIC_MODEL)
    if total < AHEAD_MIN_ITEMS or in_process:
        yield _InProcess(embedder)
        return
    try:
        pool = _Pool(embedder, processes or ahead_processes())
    except OSError as exc:
        log.warning("cannot start the embedding processes (%s); embedding in process", exc)
        yield _InProcess(embedder)
        return
    try:
        yield pool
    finally:
        pool.close()


def ahead_processes() -> int:
    """One embedding child per core this process may use (at most AHEAD_MAX_PROCESSES): the
    parent's Chroma writes take a fifth of the CPU, so the children keep the cores busy."""
    return max(1, min(len(os.sched_getaffinity(0)), AHEAD_MAX_PROCESSES))


def main() -> None:
    """The child: texts in, vectors out, until its input ends."""
    from pathlib import Path

    model, backend, cache_dir, threads = sys.argv[-4:]  # after "-c" (or the script's path)
    embedder = Embedder(
        model_path=model,
        backend=backend,  # type: ignore[arg-type]
        cache_dir=Path(cache_dir),
        threads=int(threads),
    )
    src, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # anything printed by libraries stays off the vectors' pipe
    while (payload := _receive(src)) is not None:
        buf = io.BytesIO()
        np.save(buf, embedder.encode(json.loads(payload)), allow_pickle=False)
        _send(out, buf.getvalue())


if __name__ == "__main__":
    main()
