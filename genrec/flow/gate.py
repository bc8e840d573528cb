"""How many requests find their candidates at once in one process, and in what order.

Retrieval is CPU work, most of it Python holding the GIL. With more threads doing it than there
are cores, the threads spend the difference handing the GIL to each other (futex wake-ups and
context switches were 38 % of the process's CPU at concurrency 8 on 2 cores), so every request
waits longer. Letting a few in at a time, first come first served, and queueing the rest does
more work per second. At 300,000 items on 2 cores, eight concurrent requests, gate sizes
interleaved in one process (300 requests each, three or four rounds; median p50, p99 range in
ms; the ungated row from an earlier such run beside gates 2 and 4, same collection):

    gate       hybrid            hybrid, filtered   content
    none       33.9  54-60       29.7  69-77        10.1  17-35
    2          22.9  28-43       23.0  29-65        12.6  15-22
    3          23.9  29-43       21.4  31-39        10.8  15-17
    4          27.0  43-64       23.0  37-105       10.8  14-47

Content retrieval is mostly a Chroma call that releases the GIL, so it gains from one more
thread than there are cores; hence the default: the CPUs, plus one (``retrieval_concurrency``).

First come first served matters: ``threading.Semaphore`` lets a thread that leaves and comes
straight back take the place again before the thread it woke runs, so one thread can keep it
while the others wait.
"""

from __future__ import annotations

import threading
from collections import deque
from types import TracebackType


class FairGate:
    """At most ``limit`` holders at once (a context manager), admitted in arrival order: a
    holder leaving hands its place to the longest waiter."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"a gate needs a limit of at least 1, not {limit}")
        self.limit = limit
        self._free = limit
        self._lock = threading.Lock()
        self._waiting: deque[threading.Event] = deque()

    def __enter__(self) -> FairGate:
        with self._lock:
            if self._free > 0 and not self._waiting:
                self._free -= 1
                return self
            turn = threading.Event()
            self._waiting.append(turn)
        turn.wait()  # set by the holder that gave this waiter its place
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with self._lock:
            if self._waiting:
                self._waiting.popleft().set()
            else:
                self._free += 1

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)
